"""The scoring pipeline: :func:`plan` → :func:`run` → :func:`compute`.

* :func:`plan` does every check before any image is decoded: the metrics' specs
  (:mod:`facemetrics.metrics.registry`), the extractors (built once per role, with
  the specs' own checks, e.g. IS needs a head), a REAL statistics file (read and
  checked against the extractor), the pairs manifest (read once), and which
  extractors each side's single decode pass feeds.
* :func:`run` is the only place images are decoded: one pass over FAKE and one over
  REAL (:func:`facemetrics.pipeline.side.extract_side`: cache, workers, torchrun sharding),
  then the pairing steps of the paired metrics (face embeddings of the pairs' real
  images not in REAL, the matcher's caption embeddings). It returns the
  :class:`~facemetrics.metrics.registry.MetricInputs` and the record's source facts.
* :func:`compute` runs every spec's pure compute on rank 0 and hands the results to
  every rank.

Sides: a path (image folder, .zip; REAL also a statistics .npz), in-memory images
(:class:`~facemetrics.imaging.inputs.PixelSource`: decoded by the same pass, from their
pixels) or a :class:`~facemetrics.imaging.inputs.Generated` (streamed through
:class:`~facemetrics.pipeline.streaming.StreamSide`; Inception metrics only). Paired
metrics need FAKE as files a pairs manifest can name.

Roles: ``inception`` (the FID network or a fine-tuned checkpoint, ``--extractor``),
``face`` (``--face-model``), ``matcher`` (the image tower of ``--matcher``), or any
role a spec brings with its own ``extractor`` builder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facemetrics.pipeline.distributed import DistContext
from facemetrics.errors import FacemetricsError
from facemetrics.metrics.registry import MetricInputs, MetricSpec, compute_all


@dataclass
class Plan:
    """Everything :func:`run` needs, checked."""

    ctx: DistContext
    opts: Any
    specs: list[MetricSpec]
    real: str  # the sides' labels in messages and the record: a path, or an in-memory input's label
    fake: str
    extractors: dict[str, Any]
    fake_src: Any  # ImageSource (scanned folder/zip), PixelSource or Generated
    pairs: list | None = None
    real_src: Any = None  # REAL as images, when its pass is needed
    real_stats: Any = None  # REAL as a statistics file (sides.SideFeatures)
    fake_roles: list[str] = field(default_factory=list)
    real_roles: list[str] = field(default_factory=list)
    #: (side, role, output) whose per-image rows a metric needs whole
    rows: set[tuple[str, str, str]] = field(default_factory=set)
    protocol: dict[str, Any] = field(default_factory=dict)
    real_in: Any = None  # the inputs as given (path str, PixelSource, Generated)
    fake_in: Any = None

    def generic(self) -> list[MetricSpec]:
        """Specs computed from side statistics/rows (not from a pairing)."""
        return [s for s in self.specs if not s.paired]

    def paired_roles(self) -> list[str]:
        return list(dict.fromkeys(n.role for s in self.specs for n in s.needs if n.form == "paired"))


def _is_images(x: Any) -> bool:
    from facemetrics.imaging.inputs import is_path

    return is_path(x) and (Path(x).is_dir() or Path(x).suffix.lower() == ".zip")


def _is_stats_file(x: Any) -> bool:
    from facemetrics.imaging.inputs import is_path

    return is_path(x) and Path(x).suffix.lower() == ".npz"


def _label(x: Any) -> str:
    """A side's name in messages and the record: its path, or an in-memory input's label."""
    from facemetrics.imaging.inputs import Generated, is_path

    if is_path(x):
        return str(x)
    return x.label if isinstance(x, Generated) else str(x.root)


def _source(ctx: DistContext, x: Any, param: str) -> Any:
    """The side to decode: a folder/zip scanned now (on every rank, agreed); in-memory inputs as they are."""
    from facemetrics.imaging.images import scan
    from facemetrics.imaging.inputs import is_path

    return ctx.run_agreed(f"reading {param}", lambda: scan(x, param)) if is_path(x) else x


def _check_in_memory(specs: list[MetricSpec], real: Any, fake: Any) -> None:
    """In-memory FAKE has no file names for a pairs manifest; a generator streams Inception metrics only."""
    from facemetrics.imaging.inputs import Generated, is_path

    if not is_path(fake):
        paired = [s.name for s in specs if s.paired]
        if paired:
            raise FacemetricsError(
                f"{', '.join(paired)} need a pairs manifest naming each generated image's file, which in-memory "
                "FAKE images do not have; save them to a folder (with a pairs.jsonl) and score the folder for "
                "those metrics", "--metrics")
    for side, x in (("real", real), ("fake", fake)):
        other = sorted({n.role for n in _needs(specs, side) if n.role != "inception"})
        if isinstance(x, Generated) and other:
            raise FacemetricsError(
                f"a generator streams its images through the Inception network only; role(s) {', '.join(other)} "
                f"(metrics {', '.join(s.name for s in specs if set(s.roles) & set(other))}) need the images as "
                "an array, a list or a folder", "--metrics")


def _build_role(role: str, specs: list[MetricSpec], opts: Any) -> Any:
    """The extractor of ``role`` (built-in roles from the options; others from a spec's builder)."""
    if role == "inception":
        from facemetrics.pipeline.sides import build_feature_extractor

        return build_feature_extractor(opts.extractor, opts.preset, opts.inception_weights, opts.precision,
                                       opts.resize_on)
    if role == "face":
        from facemetrics.pairing.face_scoring import build_face_embedder

        return build_face_embedder(opts.face_model, opts.face_align, opts.face_weights)
    if role == "matcher":
        from facemetrics.pairing.text_scoring import build_image_extractor

        return build_image_extractor(opts.matcher, device=opts.device, batch_size=opts.batch_size)
    builder = next((s.extractor for s in specs if role in s.roles and s.extractor is not None), None)
    if builder is None:
        raise FacemetricsError(f"no extractor is known for role {role!r} (metrics "
                               f"{', '.join(s.name for s in specs if role in s.roles)})", "--metrics")
    return builder(opts)


def _build_extractors(ctx: DistContext, specs: list[MetricSpec], opts: Any) -> dict[str, Any]:
    """One extractor per role; each spec's check runs on the extractors it uses (on every rank).

    The face embedder and the matcher are built first and :meth:`~FeatureExtractor.start`-ed, so that
    worker processes (dlib's) load their models while the Inception weights load here.
    """
    from facemetrics.pipeline.features import worker_count

    roles = list(dict.fromkeys(r for s in specs for r in s.roles))

    def build_generic() -> dict[str, Any]:
        out = {r: _build_role(r, specs, opts) for r in roles if r not in ("face", "matcher")}
        for s in specs:
            if s.check is not None and s.roles[0] in out:
                s.check(out[s.roles[0]])
        for ex in out.values():
            ex.fingerprint()  # finds the weights now, not after a decode pass
        return out

    def build_paired() -> dict[str, Any]:  # the face embedder and the matcher's image tower
        out = {r: _build_role(r, specs, opts) for r in roles if r in ("face", "matcher")}
        return {r: ex for r, ex in out.items() if ex is not None}  # None: the matcher reads FAKE itself

    paired = ctx.run_agreed("building the face/text extractors", build_paired)
    for ex in paired.values():
        ex.start(worker_count(opts.workers))
    exs = ctx.run_agreed("finding the feature extractor", build_generic)
    exs.update(paired)
    return exs


def _check_pairs_given(specs: list[MetricSpec], opts: Any) -> None:
    paired = [s.name for s in specs if s.paired]
    if paired and not opts.pairs:
        raise FacemetricsError(
            f"{', '.join(paired)} compare each generated image with its own caption or real image: "
            "give the pairing with --pairs pairs.jsonl (see README: pairs manifest)", "--pairs")


def _needs(specs: list[MetricSpec], side: str, forms: tuple[str, ...] = ("stats", "rows")) -> list:
    return [n for s in specs for n in s.needs if side in n.sides and n.form in forms]


def _read_real_stats(plan: Plan) -> None:
    """REAL as a statistics file: read and checked now; only the inception role can use it."""
    from facemetrics.pipeline.sides import load_side

    needs = _needs(plan.specs, "real")
    other = sorted({n.role for n in needs if n.role != "inception"})
    if other:
        raise FacemetricsError(f"REAL {plan.real} is a statistics file, but role(s) {', '.join(other)} need "
                               "its images", "REAL")
    ex = plan.extractors["inception"]
    rows = any(n.form == "rows" and not n.optional for n in needs)  # optional rows: used if the file has them
    plan.real_stats = load_side(plan.real_in, ex, "REAL", {}, plan.ctx, features=rows, logits=False,
                                foreign_preset=plan.opts.real_stats_preset)
    by_rows = [s.name.upper() for s in plan.specs
               if any(n.form == "rows" and not n.optional and "real" in n.sides for n in s.needs)]
    if by_rows and plan.real_stats.features is None:
        raise FacemetricsError(
            f"{', '.join(by_rows)} needs per-image features and {plan.real} holds statistics only; re-create it "
            "with `facemetrics stats FOLDER --features -o FILE.npz`", "REAL")


def _pairs_cover(src: Any, pairs: list | None) -> bool:
    """Whether every image of the folder ``src`` is some pair's real image (e.g. a run's
    ``real_test``): then one pass can feed Inception and the face embedder without embedding
    faces nobody asked for."""
    import os

    wanted = {os.path.realpath(r.real) for r in pairs or () if r.real is not None}
    return bool(src.names) and all(os.path.realpath(src.root / n) in wanted for n in src.names)


def _plan_sides(plan: Plan) -> None:
    """Which extractors FAKE's and REAL's passes feed, and which rows must be whole."""
    ctx, specs = plan.ctx, plan.specs
    plan.fake_roles = [r for r in plan.extractors if any(n.role == r for n in
                                                         _needs(specs, "fake", ("stats", "rows", "paired")))]
    real_generic = list(dict.fromkeys(n.role for n in _needs(specs, "real")))
    plan.rows = {(side, n.role, n.output) for side in ("real", "fake") for n in _needs(specs, side, ("rows",))
                 if n.wanted(plan.opts)}
    if not real_generic or plan.real_stats is not None:
        return
    plan.real_src = _source(ctx, plan.real_in, "REAL")
    plan.real_roles = real_generic
    if "face" in plan.extractors and "face" not in plan.real_roles and _is_images(plan.real_in) \
            and Path(plan.real_in).is_dir() and _pairs_cover(plan.real_src, plan.pairs):
        plan.real_roles.append("face")  # REAL = the pairs' real images: one pass for both


def plan(ctx: DistContext, real: Any, fake: Any, specs: list[MetricSpec], opts: Any) -> Plan:
    """Check everything and decide the decode passes (see module docstring); decodes nothing.

    ``real``/``fake``: paths, or in-memory inputs from :func:`facemetrics.imaging.inputs.resolve_input`.
    """
    if _is_stats_file(fake):
        raise FacemetricsError("FAKE must be an image folder or .zip (statistics files are for REAL)", "FAKE")
    _check_in_memory(specs, real, fake)
    _check_pairs_given(specs, opts)
    exs = _build_extractors(ctx, specs, opts)
    p = Plan(ctx, opts, specs, _label(real), _label(fake), exs, None)
    p.real_in, p.fake_in = real, fake
    p.protocol = {"preset": opts.preset, "extractor": None, "weights_sha256": None, "dims": None, "seed": opts.seed}
    if "inception" in exs:
        fp = exs["inception"].fingerprint()
        p.protocol.update(extractor=fp.get("extractor"), weights_sha256=fp.get("weights_sha256"), dims=2048,
                          network=fp.get("network"))
        from facemetrics.pipeline.sides import approximate_protocol

        p.protocol.update(approximate_protocol(fp))
        if _needs(specs, "real") and _is_stats_file(real):
            _read_real_stats(p)
    p.fake_src = _source(ctx, fake, "FAKE")
    if p.paired_roles():
        from facemetrics.pairing.captions import load_pairs

        real_root = Path(real) if _is_images(real) else None
        # the roots as given: manifests name files through the user's paths, links included
        p.pairs = ctx.run_agreed("reading --pairs", lambda: load_pairs(opts.pairs, fake, real_root))
    _plan_sides(p)
    return p


# --------------------------------------------------------------------------- run

@dataclass
class Outcome:
    """What :func:`run` produced: the metrics' inputs and the record's facts."""

    inputs: MetricInputs
    sources: dict[str, Any] = field(default_factory=dict)  # "real"/"fake" -> record source_info
    failed: dict[str, list] = field(default_factory=lambda: {"real": [], "fake": []})
    notes: list[str] = field(default_factory=list)


def _pass(plan: Plan, src: Any, roles: list[str], param: str) -> Any:
    """One decode pass of ``src`` feeding the extractors of ``roles`` (the only decoding place).

    A :class:`~facemetrics.imaging.inputs.Generated` is streamed instead (Inception only):
    the pass returns its :class:`~facemetrics.pipeline.sides.SideFeatures` directly.
    """
    from facemetrics.imaging.inputs import Generated
    from facemetrics.pipeline.side import extract_side

    o = plan.opts
    exs = [plan.extractors[r] for r in roles]
    if isinstance(src, Generated):
        from facemetrics.pipeline.streaming import stream_generated

        side = param.lower()
        want = {out for (s, r, out) in plan.rows if s == side and r == "inception"}
        opts = dict(batch_size=o.batch_size, workers=o.workers, device=plan.ctx.device,
                    progress=o.progress and plan.ctx.is_main)
        return stream_generated(src, plan.extractors["inception"], param, opts, plan.ctx,
                                features="pool" in want, logits="logits" in want)
    return extract_side(src, exs, plan.ctx, param=param, desc=f"{param.lower()} " + "+".join(e.name for e in exs),
                        batch_size=o.batch_size, workers=o.workers, device=plan.ctx.device, cache=o.cache,
                        strict=o.strict, progress=o.progress and plan.ctx.is_main, workers_kind=o.workers_kind)


def _role_data(plan: Plan, side_name: str, side: Any, role: str, out: Outcome) -> Any:
    """One role's statistics and rows on one side, into ``out``; returns the side's source facts."""
    from facemetrics.imaging.inputs import record_kind
    from facemetrics.pipeline.sides import SideFeatures, side_features
    from facemetrics.record import source_info

    ex = plan.extractors[role]
    if role == "inception" or isinstance(side, SideFeatures):
        want = {o for (s, r, o) in plan.rows if s == side_name and r == role}
        sf = side if isinstance(side, SideFeatures) else side_features(
            side, ex, side_name.upper(), features="pool" in want, logits="logits" in want)
        if not isinstance(side, SideFeatures) and record_kind(side.source):
            sf.kind = record_kind(side.source)  # in-memory images: "array" | "images"
        out.inputs.stats[(side_name, role, "pool")] = sf.stats
        for output, rows in (("pool", sf.features), ("logits", sf.logits)):
            if rows is not None:
                out.inputs.rows[(side_name, role, output)] = rows
        info = {**source_info(sf.path, sf.kind, sf.n, sf.content_sha256), **getattr(sf, "info", {})}
        return info, list(sf.failed), sf.stats.dims
    meta = {"fingerprint": ex.fingerprint(), "content_sha256": side.content_key, "source": str(side.source.root)}
    for n in _needs(plan.specs, side_name):
        if n.role == role:
            key = (side_name, role, n.output)
            if n.form == "stats":
                out.inputs.stats[key] = side.stats(ex.name, n.output, meta)
            else:
                out.inputs.rows[key] = side.rows(ex.name, n.output)
    kind = record_kind(side.source) or side.source.kind
    info = source_info(side.source.root, kind, side.n, side.content_key)
    return info, [list(f) for f in side.failed], None


def _side_data(plan: Plan, side_name: str, side: Any, out: Outcome) -> None:
    """Statistics and whole rows of every generic role the side feeds, into ``out``."""
    for role in dict.fromkeys(n.role for n in _needs(plan.specs, side_name)):
        info, failed, dims = _role_data(plan, side_name, side, role, out)
        if side_name not in out.sources:
            out.sources[side_name], out.failed[side_name] = info, failed
        if side_name == "fake" and role == "inception":
            plan.protocol["dims"] = dims
    out.inputs.labels[side_name] = str(plan.real if side_name == "real" else plan.fake)


def _pair_faces(plan: Plan, fake_side: Any, real_side: Any, out: Outcome) -> None:
    from facemetrics.options import DecodeOptions
    from facemetrics.pairing.face_scoring import pair_faces

    o, face = plan.opts, plan.extractors["face"]
    extra: dict[str, Any] = {}
    if fake_side is not None and "face" in plan.fake_roles:
        extra["fake_extraction"] = fake_side.extraction(face.name)
    if real_side is not None and "face" in plan.real_roles:
        extra["real_extraction"] = (plan.real_src, real_side.extraction(face.name))
    decode = DecodeOptions(batch_size=o.batch_size, workers=o.workers, device=plan.ctx.device, cache=o.cache,
                           strict=o.strict, progress=o.progress and plan.ctx.is_main)
    fp, notes = pair_faces(plan.pairs, plan.fake_src, face_model=o.face_model, face_align=o.face_align,
                           weights=o.face_weights, decode=decode, **extra)
    out.inputs.paired["face"] = fp
    out.notes.extend(notes)
    for side in ("real", "fake"):
        for item in fp.details.get("failed_images", {}).get(side, []):
            if list(item) not in out.failed[side]:
                out.failed[side].append(list(item))


def _pair_texts(plan: Plan, fake_side: Any, out: Outcome) -> None:
    from facemetrics.options import DecodeOptions
    from facemetrics.pairing.text_scoring import pair_texts

    o = plan.opts
    wanted = [s.name for s in plan.specs if any(n.role == "matcher" for n in s.needs)]
    extra: dict[str, Any] = {}
    tower = plan.extractors.get("matcher")
    if tower is not None and fake_side is not None:
        extra = {"fake_extraction": fake_side.extraction(tower.name), "matcher": tower.matcher}
    decode = DecodeOptions(batch_size=o.batch_size, device=plan.ctx.device, strict=o.strict,
                           progress=o.progress and plan.ctx.is_main)
    tp, notes = pair_texts(plan.pairs, plan.fake_src, wanted=wanted, matcher_spec=o.matcher, decode=decode, **extra)
    out.inputs.paired["matcher"] = tp
    out.notes.extend(notes)


def run(plan: Plan) -> Outcome:
    """Decode each side once for all its extractors, then assemble every metric's inputs."""
    from facemetrics.record import source_info

    out = Outcome(MetricInputs(options=plan.opts, extractors=plan.extractors))
    fake_side = _pass(plan, plan.fake_src, plan.fake_roles, "FAKE") if plan.fake_roles else None
    if _needs(plan.specs, "fake"):
        _side_data(plan, "fake", fake_side, out)
    real_side = None
    if plan.real_stats is not None:
        _side_data(plan, "real", plan.real_stats, out)
        if plan.real_stats.kind == "foreign-stats":
            from facemetrics.pipeline.sides import FOREIGN_STATS_FLAG

            out.notes.append(f"REAL {plan.real_stats.path} holds foreign mu/sigma statistics: their protocol (preset "
                             f"{plan.opts.real_stats_preset}, standard FID Inception pool3) was asserted with "
                             f"{FOREIGN_STATS_FLAG}, not verified")
    elif plan.real_roles:
        real_side = _pass(plan, plan.real_src, plan.real_roles, "REAL")
        _side_data(plan, "real", real_side, out)
    if plan.pairs is not None and "fake" not in out.sources:
        out.sources["fake"] = source_info(plan.fake_src.root, plan.fake_src.kind, len(plan.pairs), None)
    roles = plan.paired_roles()
    if "face" in roles:
        _pair_faces(plan, fake_side, real_side, out)
    if "matcher" in roles:
        _pair_texts(plan, fake_side, out)
    return out


def compute(plan: Plan, outcome: Outcome) -> dict[str, Any]:
    """Every metric from its inputs, side metrics first: computed on rank 0, handed to every rank."""
    generic = plan.ctx.on_main("computing FID/KID/IS", lambda: compute_all(plan.generic(), outcome.inputs))
    if plan.real_stats is not None and plan.real_stats.kind == "foreign-stats" and "fid" in generic:
        generic["fid"].details["real_protocol"] = {"asserted": True, "verified": False,
                                                   "preset": plan.opts.real_stats_preset}
    return {**generic, **compute_all([s for s in plan.specs if s.paired], outcome.inputs)}
