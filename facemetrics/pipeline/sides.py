"""The sides of a scoring run as the Inception metrics see them, and the extractor behind them.

:class:`SideFeatures` is one side (REAL or FAKE) reduced to what FID/KID/IS need:
float64 statistics, and per-image pool features / logits when asked. It comes
from an image pass (:func:`side_features`), a facemetrics statistics file (checked
against this run's extractor: :func:`same_network`), or a foreign mu/sigma file
whose protocol the user asserts (:data:`FOREIGN_STATS_FLAG`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.protocol import NETWORK_KEYS, is_standard_fid_inception, protocol_differences
from facemetrics.result import MetricResult


def check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FacemetricsError("--device cuda was asked for but no CUDA device is available", "--device")
        return device
    raise FacemetricsError(f"unknown device {device!r} (cpu or cuda[:N])", "--device")


def build_feature_extractor(extractor: str | None, preset: str, inception_weights: str | None,
                            precision: str = "fp32", resize_on: str = "cpu") -> FeatureExtractor:
    """``None``/"inception": the FID Inception; an existing ``.pt`` file: a fine-tuned checkpoint.

    ``precision="bf16"`` (approximate) and ``resize_on="device"`` exist for the FID Inception only.
    """
    from facemetrics.extractors import build_extractor

    if extractor in (None, "inception"):
        return build_extractor("inception", preset=preset, weights=inception_weights, precision=precision,
                               resize_on=resize_on)
    if precision != "fp32":
        raise FacemetricsError(f"--precision {precision} is an approximate path of the FID Inception only; "
                               f"--extractor {extractor} runs in fp32: drop --precision", "--precision")
    if resize_on != "cpu":
        raise FacemetricsError(f"--resize-on {resize_on} exists for the FID Inception only; --extractor "
                               f"{extractor} resizes on the CPU: drop --resize-on", "--resize-on")
    if Path(extractor).suffix in (".pt", ".pth"):
        if not Path(extractor).is_file():
            raise FacemetricsError(f"extractor checkpoint not found: {extractor}", "--extractor")
        return build_extractor("finetuned", checkpoint=extractor, preset=preset)
    return build_extractor(extractor)


def approximate_protocol(fp: dict[str, Any]) -> dict[str, Any]:
    """The record's marks of a non-default Inception path: ``--precision bf16`` (approximate):
    ``exact: false`` and the precision; ``--resize-on device``: ``resize`` (within ~1e-4 of PIL's
    resize, FID within the reference tolerance, so still exact). Nothing for the default path
    (its records are unchanged)."""
    out: dict[str, Any] = {"resize": fp["resize"]} if fp.get("resize") else {}
    if fp.get("precision", "fp32") == "fp32":
        return out
    return {**out, "exact": False, "precision": fp["precision"],
            "approximation": "Inception under bfloat16 autocast; FID deviation from fp32 measured in "
                             "benchmarks/RESULTS.md (bf16 path)"}


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
    if not is_standard_fid_inception(fp):
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
    differ = protocol_differences(theirs, fp, NETWORK_KEYS)
    if differ:
        diffs = [f"{k}: file has {theirs.get(k)!r}, this run uses {fp.get(k)!r}" for k in differ]
        raise FacemetricsError(f"statistics file {path} was made with another protocol ({'; '.join(diffs)})", param)
    return SideFeatures(str(path), "stats", st.meta.get("content_sha256"), st.n, st, feats, None, [])


def side_features(side, ex: FeatureExtractor, param: str, *, features: bool = True,
                  logits: bool = True) -> SideFeatures:
    """FID statistics (summed over ranks) and, when asked, per-image features/logits (gathered) of a side.

    In a single process the rows are at hand and always returned; under torchrun
    they are gathered only when ``features``/``logits`` ask for them.
    """
    from facemetrics.pipeline.distributed import shared_error

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


def load_inception_extractor(inc: list[str], extractor: str | None, preset: str, inception_weights: str | None,
                             precision: str = "fp32", resize_on: str = "cpu") -> tuple[FeatureExtractor, dict]:
    """The Inception-type extractor for the metrics ``inc`` and its fingerprint, after the specs' checks
    (IS refuses a network without a usable classifier head); finds the weights."""
    from facemetrics.metrics.registry import resolve

    e = build_feature_extractor(extractor, preset, inception_weights, precision, resize_on)
    for spec in resolve(inc):
        if spec.check is not None:
            spec.check(e)
    return e, e.fingerprint()


def inception_results(inc: list[str], rl: SideFeatures | None, fk: SideFeatures, ex: FeatureExtractor,
                      opts: Any) -> dict[str, MetricResult]:
    """The registered specs of ``inc`` (fid/kid/is) on REAL ``rl`` (None for IS alone) and FAKE ``fk``.

    For callers that hold :class:`SideFeatures` (the streaming accumulator); ``opts`` is the
    run's :class:`~facemetrics.options.ScoreOptions`. The numbers come from the same spec
    compute functions as :func:`facemetrics.score`'s.
    """
    from facemetrics.metrics.registry import MetricInputs, compute_all, resolve

    inputs = MetricInputs(options=opts, extractors={"inception": ex})
    for name, sf in (("real", rl), ("fake", fk)):
        if sf is None:
            continue
        inputs.stats[(name, "inception", "pool")] = sf.stats
        inputs.labels[name] = sf.path
        for output, rows in (("pool", sf.features), ("logits", sf.logits)):
            if rows is not None:
                inputs.rows[(name, "inception", output)] = rows
    return compute_all(resolve(inc), inputs)


def _side_from_images(path: str, ex: FeatureExtractor, param: str, opts: dict, ctx=None,
                      features: bool = True, logits: bool = True) -> SideFeatures:
    from facemetrics.pipeline.distributed import SINGLE
    from facemetrics.imaging.images import scan
    from facemetrics.pipeline.side import extract_side

    ctx = ctx or SINGLE
    src = ctx.run_agreed(f"reading {param}", lambda: scan(path, param))
    side = extract_side(src, [ex], ctx, param=param, desc=f"{param.lower()} {ex.name}", **opts)
    return side_features(side, ex, param, features=features, logits=logits)


def load_side(path: str, ex: FeatureExtractor, param: str, opts: dict, ctx=None, features: bool = True,
              logits: bool = True, foreign_preset: str | None = None) -> SideFeatures:
    """A side from an image folder/zip or a statistics .npz.

    ``foreign_preset``: the protocol asserted for a mu/sigma-only .npz (see :func:`_side_from_foreign_stats`).
    """
    from facemetrics.pipeline.distributed import SINGLE

    p = Path(path)
    if p.suffix.lower() == ".npz":
        def read() -> SideFeatures:
            if not p.is_file():
                raise FacemetricsError(f"{param} statistics file does not exist: {p}", param)
            return _side_from_stats(p, ex, param, foreign_preset=foreign_preset, features=features)

        return (ctx or SINGLE).run_agreed(f"reading {param}", read)
    return _side_from_images(path, ex, param, opts, ctx, features, logits)
