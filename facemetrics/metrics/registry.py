"""The metric registry: one :class:`MetricSpec` per metric, looked up by name.

A spec says what a metric needs and how to compute it, so the scoring pipeline
(:mod:`facemetrics.pipeline.planner`) never special-cases a metric:

* ``needs``: which extractor role feeds it (``inception``, ``face``, ``matcher`` or a
  role of the spec's own, built by ``spec.extractor``), which output of that
  extractor (``pool``, ``logits``, ``embedding``, ...), in which form, and from
  which sides (``real``, ``fake``). Forms:

  - ``stats``: float64 sufficient statistics n, Σx, Σxxᵀ of the output over a side
    (:class:`~facemetrics.stats.FeatureStats`, summed over torchrun ranks);
  - ``rows``: the per-image rows of the output in file order (gathered over ranks);
  - ``paired``: rows aligned by the pairs manifest (a generated image and its real
    image or caption), assembled by the role's pairing step (face: FSD/FSS, matcher:
    R-precision, CLIP score).

  An ``optional`` need is used when the side can provide it and is no error when it
  cannot (FID's intervals draw REAL's per-image rows when REAL has them, and only FAKE's
  when REAL is a statistics file without features).

* ``compute(inputs)``: a pure function of :class:`MetricInputs` returning
  ``{result name: MetricResult}`` (usually one entry; FSD also returns ``fsd_l1``).
* ``check(extractor)``: optional, run before any image is decoded (e.g. IS needs
  a single-label classifier head).
* ``protocol``: the keys of the result's ``details`` that record its protocol (seed,
  subset sizes, extractor, ...); :func:`compute_all` refuses a result that lacks one, so
  no number leaves without its protocol.
* ``bundle``: names always computed together with this one (FSD and FSS share one
  embedding pass and are reported together).

Adding a metric is adding one module that calls :func:`register` (see
``tests/test_registry.py`` for a toy metric with its own extractor). The built-in
modules are imported on the first lookup, so listing metrics stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult

#: modules that register the built-in metrics, in the order metrics are listed
BUILTIN_MODULES: tuple[str, ...] = (
    "facemetrics.metrics.fid",
    "facemetrics.metrics.kid",
    "facemetrics.metrics.inception_score",
    "facemetrics.metrics.face",
    "facemetrics.metrics.rprecision",
    "facemetrics.metrics.clipscore",
    "facemetrics.metrics.prdc",
    "facemetrics.metrics.face_space",
    "facemetrics.metrics.extrapolated",
)

FORMS = ("stats", "rows", "paired")
SIDES = ("real", "fake")


@dataclass(frozen=True)
class Need:
    """One input of a metric: ``form`` of extractor ``role``'s ``output`` on ``sides``."""

    role: str
    output: str
    form: str
    sides: tuple[str, ...] = SIDES
    optional: bool = False
    #: options of which one must be truthy for the need to be requested at all (empty: always), e.g. FID's
    #: rows only feed its interval and ``--keep-rows``: under ``--ci 0`` torchrun gathers no features for FID
    enabled_by: tuple[str, ...] = ()

    def wanted(self, opts: Any) -> bool:
        """Whether this run requests the need (see :attr:`enabled_by`)."""
        return not self.enabled_by or any(getattr(opts, k, None) for k in self.enabled_by)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        if not self.sides or any(s not in SIDES for s in self.sides):
            raise ValueError(f"sides must be a non-empty subset of {SIDES}, got {self.sides!r}")


@dataclass
class MetricInputs:
    """What the pipeline hands a metric's ``compute``.

    ``stats[(side, role, output)]`` and ``rows[(side, role, output)]`` hold the
    ``stats``/``rows`` needs; ``paired[role]`` the pairing of a ``paired`` need
    (:class:`facemetrics.pairing.face_scoring.FacePairs`,
    :class:`facemetrics.pairing.text_scoring.TextPairs`); ``extractors[role]`` the extractor
    that produced them; ``options`` the run's options (seed, subset sizes, ...).
    """

    options: Any
    extractors: dict[str, Any] = field(default_factory=dict)
    stats: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    paired: dict[str, Any] = field(default_factory=dict)
    #: per side, a human description used in messages (e.g. the REAL path)
    labels: dict[str, str] = field(default_factory=dict)
    #: intermediate results shared by several specs of one run (e.g. the k-NN pass of precision/recall/
    #: density/coverage), keyed by the spec module's own tuple
    memo: dict[tuple, Any] = field(default_factory=dict)

    def stat(self, side: str, role: str = "inception", output: str = "pool"):
        return self.stats[(side, role, output)]

    def row(self, side: str, role: str = "inception", output: str = "pool"):
        return self.rows.get((side, role, output))


@dataclass(frozen=True)
class MetricSpec:
    """A metric: name, direction, inputs, protocol keys, optional check, pure compute."""

    name: str
    higher_is_better: bool
    needs: tuple[Need, ...]
    compute: Callable[[MetricInputs], dict[str, MetricResult]]
    summary: str = ""
    protocol: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    bundle: tuple[str, ...] = ()
    #: builds the extractor of a role the pipeline does not know (options -> FeatureExtractor)
    extractor: Callable[[Any], Any] | None = None

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.role for n in self.needs))

    @property
    def paired(self) -> bool:
        return any(n.form == "paired" for n in self.needs)

    def reads(self, side: str) -> bool:
        return any(side in n.sides for n in self.needs)


_SPECS: dict[str, MetricSpec] = {}
_loaded = False


def register(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Add ``spec`` to the registry (``replace=True`` to override a name); returns it."""
    if spec.name in _SPECS and not replace and _SPECS[spec.name] is not spec:
        raise ValueError(f"a metric named {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a metric (for tests and plugins)."""
    _SPECS.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def _order() -> dict[str, int]:
    """Position of each registered name: built-ins in :data:`BUILTIN_MODULES` order (whatever imported
    them first), then the others in registration order."""
    def key(item: tuple[int, MetricSpec]) -> tuple[int, int]:
        i, spec = item
        mod = spec.compute.__module__
        return (BUILTIN_MODULES.index(mod) if mod in BUILTIN_MODULES else len(BUILTIN_MODULES), i)

    ranked = sorted(enumerate(_SPECS.values()), key=key)
    return {spec.name: pos for pos, (_, spec) in enumerate(ranked)}


def available() -> list[str]:
    """Registered metric names, built-ins first in their documented order."""
    _load_builtins()
    order = _order()
    return sorted(_SPECS, key=order.__getitem__)


def get(name: str) -> MetricSpec:
    _load_builtins()
    try:
        return _SPECS[name]
    except KeyError:
        raise FacemetricsError(f"unknown metric {name!r}; choose from {', '.join(available())}", "--metrics") from None


def parse_metrics(metrics: str | Iterable[str]) -> list[str]:
    """Names from ``"fid,kid"`` or an iterable, lower-cased, de-duplicated, in order; unknown names refused."""
    _load_builtins()
    items = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    items = [m for m in items if m]
    unknown = [m for m in items if m not in _SPECS]
    if unknown or not items:
        raise FacemetricsError(
            f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(available())}", "--metrics")
    return list(dict.fromkeys(items))


def resolve(metrics: str | Iterable[str]) -> list[MetricSpec]:
    """The specs of ``metrics``, with every spec's ``bundle`` companions added after it."""
    wanted = parse_metrics(metrics)
    order = _order()
    names: list[str] = []
    for name in wanted:
        for n in sorted((name, *get(name).bundle), key=order.__getitem__):  # a bundle in registry order
            if n not in names:
                names.append(n)
    return [get(n) for n in names]


def compute_all(specs: Iterable[MetricSpec], inputs: MetricInputs) -> dict[str, MetricResult]:
    """Every spec's results, in spec order; a result missing one of the spec's protocol keys is a bug."""
    out: dict[str, MetricResult] = {}
    for spec in specs:
        for name, res in spec.compute(inputs).items():
            missing = [k for k in spec.protocol if k not in res.details]
            if missing:
                raise RuntimeError(f"metric {spec.name}: result {name} does not record {', '.join(missing)}")
            out[name] = res
    return out
