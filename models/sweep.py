"""``python -m models sweep``: a grid of training runs, each under a time budget, scored and ranked.

The cartesian product of the ``--grid KEY=V1,V2,...`` axes gives the cells (first axis
slowest). Each cell, in its own folder ``OUT/<key>=<value>,<key>=<value>,...`` (the
overrides, in grid order; characters other than letters, digits and ``-._+`` are
%-escaped), goes through four stages, each a subprocess of the ordinary commands:

1. **train**: ``python -m models train --config CELL/config.yaml --out CELL/run``, where
   ``config.yaml`` is the resolved config (``--config`` + ``--set`` + the cell's
   overrides + ``train.budget_minutes = --minutes``). The budget is training wall time
   summed over invocations (recorded in the checkpoint), so an interrupted cell resumed
   with ``train --resume CELL/run`` gets only what is left of it.
2. **generate**: ``python -m models generate --checkpoint CELL/run/last.pt --captions test``
   into ``CELL/samples`` (one image per held-out caption, EMA generator, ``--gen-seed``).
3. **score**: ``python -m facemetrics score CELL/run/real_test CELL/samples --pairs ...``
   with FID (clean preset), FSD/FSS and R-precision by default, written to
   ``CELL/metrics.json``. R-precision uses ``--matcher SPEC`` for every cell when given
   (one fixed matcher: comparable across cells); otherwise each cell's own DAMSM encoders
   (``damsm:CELL/run/last.pt``), which the report says are not comparable across cells.
   When the held-out captions are too few for the protocol (99 negatives of other images
   and identities, 10 folds) R-precision is left out and the reason recorded.
   Then, when R-precision was scored, the same matcher, captions, negatives and seed on the
   **real** held-out image of each caption (copied as FAKE to ``CELL/real_as_fake`` with the
   same pairs rows; ``CELL/metrics_real.json``): the matcher's own quality, reported beside the
   generated images' R-precision.
4. **grid**: ``CELL/grid.png``, generated images next to their real ones
   (:func:`facemetrics.report.plots.grid_from_manifest`).

Then one ``facemetrics report`` table ranks the scored cells (``--sort``, FID by
default): ``OUT/report.md``, ``OUT/report.csv`` (numbers at full precision with the
cell's overrides, steps and status) and ``OUT/report.html`` (the table and every
cell's sample grid). ``OUT/sweep.json`` records the grid, budget, seeds, the resolved
base config and each cell's stages and status.

Resumable: rerunning the same command skips every finished stage (a trained cell has
its train result in the manifest and an unchanged ``last.pt`` (sha256); samples match
the checkpoint's sha256; a score record exists for the current pairs file and checkpoint),
resumes an
interrupted training, and refuses a different grid, budget, config or protocol in the
same ``--out``. Budget-bounded runs are not bit-reproducible: how many steps fit in M
minutes depends on the machine's speed (each cell's step count is recorded).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from facemetrics.errors import FacemetricsError
from facemetrics.storage.atomic import atomic_write_text
from models import config as C

FORMAT = "models.sweep/1"
#: keys the sweep sets itself, and the option that sets them
RESERVED: dict[str, str] = {"train.budget_minutes": "--minutes", "train.max_minutes": "--minutes",
                            "data.root": "--data", "device": "--device"}
DEFAULT_METRICS = ("fid", "fsd", "fss", "rprec")
#: R-precision protocol of ``facemetrics score`` (DESIGN.md §3)
RPREC_NEGATIVES, RPREC_FOLDS = 99, 10
FINISHED_TRAIN = ("done", "time limit")
_REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- grid

@dataclass(frozen=True)
class GridAxis:
    """One ``--grid`` item: a config key and its values (as typed and as parsed)."""

    key: str
    raws: tuple[str, ...]
    values: tuple[Any, ...]


def parse_grid(items: Sequence[str]) -> list[GridAxis]:
    """``["loss.lambda=1,5,10", ...]`` → axes, each value checked against the config schema.

    Usage errors (:class:`FacemetricsError` with param ``--grid``): no item, an item
    without ``=``, an unknown key (with the closest valid ones), a key the sweep sets
    itself (:data:`RESERVED`), a mapping-valued key, the same key twice, no values or an
    empty value, a value that does not parse to the key's type or choices, a value twice.
    """
    if not items:
        raise FacemetricsError("give at least one --grid KEY=V1,V2,...", "--grid")
    axes: list[GridAxis] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        where = f"--grid {item!r}"
        if not sep or not key:
            raise FacemetricsError(f"{where} must look like key.sub=v1,v2,...", "--grid")
        if key in RESERVED:
            raise FacemetricsError(f"{where}: {key} is set by the sweep's {RESERVED[key]} option, "
                                   "not a grid axis", "--grid")
        if key not in C.flat_keys():
            raise C._unknown_key(key, where, "--grid")
        if any(a.key == key for a in axes):
            raise FacemetricsError(f"{where}: {key} is already a grid axis; give its values in one --grid", "--grid")
        default = C.get(C.DEFAULTS, key)
        expected = C.NULLABLE_TYPES.get(key) if default is None else type(default)
        if expected in (dict, list):
            raise FacemetricsError(f"{where}: {key} holds a {expected.__name__} and cannot be swept "
                                   "(set it with --set)", "--grid")
        if not raw.strip():
            raise FacemetricsError(f"{where}: no values for {key}; give {key}=V1,V2,...", "--grid")
        raws = tuple(r.strip() for r in raw.split(","))
        if any(not r for r in raws):
            raise FacemetricsError(f"{where}: an empty value in the list for {key}", "--grid")
        values = []
        for r in raws:
            try:
                v = C._parse_value(r)
            except Exception as e:  # noqa: BLE001 - yaml.YAMLError
                raise FacemetricsError(f"{where}: value {r!r} is not valid YAML ({e})", "--grid") from None
            if expected is float and isinstance(v, str):  # YAML 1.1 reads 1e-3 as a string
                try:
                    v = float(r)
                except ValueError:
                    pass
            values.append(C._check_type(key, v, default, where, "--grid"))
        dup = [r for i, (r, v) in enumerate(zip(raws, values)) if v in values[:i]]
        if dup:
            raise FacemetricsError(f"{where}: value {dup[0]!r} of {key} is given twice", "--grid")
        axes.append(GridAxis(key, raws, tuple(values)))
    return axes


def _nested(key: str, value: Any) -> dict:
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


def cell_name(pairs: Sequence[tuple[str, str]]) -> str:
    """Folder name of a cell: ``key=value`` per axis, comma-joined, odd characters %-escaped."""
    return ",".join(f"{k}={urllib.parse.quote(r, safe='-._+')}" for k, r in pairs)


@dataclass
class Cell:
    """One grid point: its name, overrides and resolved config."""

    index: int
    name: str
    overrides: dict[str, Any]
    config: dict


def build_cells(axes: Sequence[GridAxis], base: dict) -> list[Cell]:
    """The cartesian product of ``axes`` applied to the validated ``base`` config."""
    cells = []
    combos = itertools.product(*[list(zip(a.raws, a.values)) for a in axes])
    for i, combo in enumerate(combos):
        cfg = copy.deepcopy(base)
        over = {}
        for axis, (raw, value) in zip(axes, combo):
            cfg = C.merge(cfg, _nested(axis.key, value), f"--grid {axis.key}={raw}", "--grid")
            over[axis.key] = value
        name = cell_name([(a.key, raw) for a, (raw, _) in zip(axes, combo)])
        try:
            C.validate(cfg)
        except FacemetricsError as e:
            raise FacemetricsError(f"grid cell {name}: {e}", "--grid") from None
        cells.append(Cell(i, name, over, cfg))
    return cells


# ----------------------------------------------------------------------------- options

@dataclass
class SweepOptions:
    """Everything ``python -m models sweep`` takes (see the command's help)."""

    grid: list[str]
    minutes: float
    out: Path
    config: str | None = None
    data: str | None = None
    overrides: list[str] = field(default_factory=list)
    device: str = "auto"
    threads: int | None = None
    matcher: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    sort: str = "fid"
    limit: int = 0
    gen_seed: int = 0
    score_seed: int = 0
    parallel: int = 1
    devices: list[str] | None = None
    ci: str | None = None
    quiet: bool = False


_METRICS_OK = ("fid", "kid", "is", "fsd", "fss", "rprec", "clipscore")


def _check_options(o: SweepOptions) -> None:
    if not o.minutes > 0:
        raise FacemetricsError(f"--minutes must be > 0, got {o.minutes}", "--minutes")
    bad = [m for m in o.metrics if m not in _METRICS_OK]
    if bad or not o.metrics:
        raise FacemetricsError(f"--metrics: unknown {', '.join(bad) or '(none given)'} "
                               f"(choose from {', '.join(_METRICS_OK)})", "--metrics")
    if o.sort not in o.metrics:
        raise FacemetricsError(f"--sort {o.sort!r} is not among --metrics {','.join(o.metrics)}", "--sort")
    if o.parallel < 1:
        raise FacemetricsError("--parallel must be >= 1", "--parallel")
    if o.matcher is not None and not o.matcher.strip():
        raise FacemetricsError("--matcher is empty", "--matcher")
    if o.matcher and ":" not in o.matcher:
        raise FacemetricsError(f"--matcher {o.matcher!r}: use clip:ARCH:TAG, clip:ARCH:PATH, clip:PATH or "
                               "damsm:CHECKPOINT", "--matcher")


def base_config(o: SweepOptions) -> dict:
    """``--config`` + ``--set`` + ``--data``/``--device`` + the budget, validated."""
    extra = list(o.overrides)
    for item in extra:
        key = item.partition("=")[0].strip()
        if key in RESERVED:
            raise FacemetricsError(f"--set {item!r}: {key} is set by the sweep's {RESERVED[key]} option", "--set")
    if o.data is not None:
        extra.append(f"data.root={json.dumps(str(Path(o.data).expanduser().resolve()))}")
    extra.append(f"device={json.dumps(o.device)}")
    cfg = C.build_config(o.config, extra)
    cfg["train"]["budget_minutes"] = float(o.minutes)
    cfg["train"]["max_minutes"] = 0.0
    if cfg["data"]["dataset"] != "synthetic" and not cfg["data"]["root"]:
        raise FacemetricsError("no data folder: pass --data PATH (or set data.root in --config)", "--data")
    return cfg


# ----------------------------------------------------------------------------- manifest

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sweep_spec(o: SweepOptions, axes: Sequence[GridAxis], base: dict) -> dict:
    """What fixes the sweep's numbers; a rerun in the same folder must give the same spec."""
    return {
        "config_file": None if o.config is None else str(Path(o.config).resolve()),
        "base_overrides": list(o.overrides),
        "base_config": base,
        "grid": [{"key": a.key, "values": list(a.values), "raw": list(a.raws)} for a in axes],
        "minutes": float(o.minutes),
        "metrics": list(o.metrics),
        "matcher": o.matcher,
        "limit": o.limit,
        "seeds": {"generate": o.gen_seed, "score": o.score_seed},
    }


_SPEC_FLAGS = {"config_file": "--config", "base_overrides": "--set", "base_config": "--config/--set/--data",
               "grid": "--grid", "minutes": "--minutes", "metrics": "--metrics", "matcher": "--matcher",
               "limit": "--limit", "seeds": "--gen-seed/--score-seed"}


class Manifest:
    """``OUT/sweep.json``, written atomically after every change (thread-safe)."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def open(cls, out: Path, spec: dict, cells: Sequence[Cell]) -> "Manifest":
        path = out / "sweep.json"
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except ValueError as e:
                raise FacemetricsError(f"{path} is not JSON ({e}); move it away or choose another --out",
                                       "--out") from None
            if data.get("format") != FORMAT:
                raise FacemetricsError(f"{path} is not a sweep manifest ({FORMAT})", "--out")
            old = data.get("spec", {})
            # compare as JSON (tuples and lists alike)
            new = json.loads(json.dumps(spec))
            diff = [k for k in new if old.get(k) != new[k]]
            if diff:
                flags = ", ".join(sorted({_SPEC_FLAGS.get(k, k) for k in diff}))
                raise FacemetricsError(
                    f"{out} holds a sweep with different {', '.join(diff)} (options {flags}); rerun it with the "
                    "options it was started with to resume it, or choose another --out", "--out")
        else:
            out.mkdir(parents=True, exist_ok=True)
            data = {"format": FORMAT, "created": _now(), "spec": json.loads(json.dumps(spec)), "cells": []}
        known = {c["name"]: c for c in data["cells"]}
        data["cells"] = [known.get(c.name) or {"name": c.name, "index": c.index, "overrides": c.overrides,
                                                "status": "pending", "train_invocations": 0}
                         for c in cells]
        for c, cell in zip(data["cells"], cells):
            c["seeds"] = {"seed": cell.config["seed"], "split_seed": cell.config["data"]["split_seed"],
                          "clip_init_seed": cell.config["clip"]["init_seed"],
                          "generate": spec["seeds"]["generate"], "score": spec["seeds"]["score"]}
        m = cls(path, data)
        m.save()
        return m

    def cell(self, name: str) -> dict:
        return next(c for c in self.data["cells"] if c["name"] == name)

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.cell(name).update(fields)
            self._save_locked()

    def save(self, **top: Any) -> None:
        with self._lock:
            self.data.update(top)
            self._save_locked()

    def _save_locked(self) -> None:
        self.data["updated"] = _now()
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ----------------------------------------------------------------------------- stages

def _env(threads: int | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    return env


class StageFailed(RuntimeError):
    """A stage's subprocess exited with an error (its output is in the cell's logs/)."""


def _run(argv: list[str], log: Path, env: dict) -> str:
    """Run ``argv``, appending its stdout+stderr to ``log``; return stdout; raise :class:`StageFailed`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        # in the caller's cwd: relative --matcher / --config paths keep their meaning
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True, env=env)
        f.write(p.stdout)
    if p.returncode != 0:
        tail = log.read_text().splitlines()[-8:]
        raise StageFailed(f"{argv[2]} {argv[3]} exited with {p.returncode} (see {log}): " + " | ".join(tail))
    return p.stdout


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise StageFailed(f"no JSON result in the command's output: {stdout[-300:]!r}")


def score_device(device: str) -> str:
    """``facemetrics score`` takes cpu or cuda[:N]: ``auto`` resolves, MPS scores on the CPU."""
    from models.system import resolve_device

    d = resolve_device(device)
    return str(d) if d.type == "cuda" else "cpu"


def ci_arguments(value: str | None, warn: Callable[[str], None]) -> list[str]:
    """``--ci`` for ``facemetrics score`` when this checkout's score command has that option.

    ``value`` is the sweep's ``--ci`` (None: not asked; ``""``: given without a value)."""
    if value is None:
        return []
    from facemetrics.cli.main import cli

    cmd = cli.commands.get("score")
    opt = next((p for p in getattr(cmd, "params", []) if "--ci" in getattr(p, "opts", ())), None)
    if opt is None:
        warn("facemetrics score has no --ci option in this checkout; scoring without confidence intervals")
        return []
    if getattr(opt, "is_flag", False):
        if value:
            warn(f"facemetrics score's --ci is a flag; the value {value!r} is ignored")
        return ["--ci"]
    if not value:
        if opt.default is None:
            raise FacemetricsError("facemetrics score's --ci takes a value here: give --ci VALUE", "--ci")
        return []  # its default applies
    return ["--ci", value]


def rprec_problem(pairs_rows: Sequence[dict]) -> str | None:
    """Why ``facemetrics score``'s R-precision protocol cannot run on these pairs (None: it can)."""
    import numpy as np

    from facemetrics.metrics.rprecision import sample_negatives

    n = len(pairs_rows)
    if n < RPREC_FOLDS:
        return f"{n} generated images, fewer than the protocol's {RPREC_FOLDS} folds"
    try:
        sample_negatives(np.arange(n), [r.get("real") or f"row {i}" for i, r in enumerate(pairs_rows)],
                         [r.get("identity") for r in pairs_rows], RPREC_NEGATIVES, np.random.default_rng(0))
    except FacemetricsError as e:
        return f"{n} held-out captions leave too few negatives: {e}"
    return None


def own_matcher(cell_cfg: dict, checkpoint: Path) -> str | None:
    """The run's own matcher as a ``--matcher`` spec: its DAMSM encoders (None for clip-clip)."""
    return f"damsm:{checkpoint}" if C.needs_damsm(cell_cfg) else None


def score_argv(cell_dir: Path, o: SweepOptions, metrics: Sequence[str], matcher: str | None, device: str,
               ci: Sequence[str]) -> list[str]:
    """The ``facemetrics score`` command line of a cell."""
    samples = cell_dir / "samples"
    argv = [sys.executable, "-m", "facemetrics", "score", str(cell_dir / "run" / "real_test"), str(samples),
            "--preset", "clean", "--metrics", ",".join(metrics), "--label", cell_dir.name,
            "--json", str(cell_dir / "metrics.json"), "--device", device, "--seed", str(o.score_seed), "-q"]
    if any(m in ("fsd", "fss", "rprec", "clipscore") for m in metrics):
        argv += ["--pairs", str(samples / "pairs.jsonl")]
    if matcher and any(m in ("rprec", "clipscore") for m in metrics):
        argv += ["--matcher", matcher]
    return argv + list(ci)


def write_real_pairs(pairs: Path, folder: Path) -> None:
    """``folder``: the real image of every generated row, as FAKE, with the same pairs rows.

    Each row's real image is copied under the generated image's stem (a pairs manifest names
    each FAKE file once, and a real image has several captions), so ``facemetrics score``'s
    R-precision on it uses the same captions, negatives and seed as on the generated images."""
    import shutil

    rows = [json.loads(x) for x in pairs.read_text().splitlines() if x.strip()]
    if folder.exists():
        shutil.rmtree(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    lines = []
    for r in rows:
        real = Path(r["real"])
        name = Path(r["fake"]).stem + real.suffix.lower()
        shutil.copyfile(real, tmp / name)
        lines.append(json.dumps({**r, "fake": name}))
    atomic_write_text(tmp / "pairs.jsonl", "\n".join(lines) + "\n")
    os.replace(tmp, folder)


def real_score_argv(cell_dir: Path, o: SweepOptions, matcher: str, device: str) -> list[str]:
    """``facemetrics score`` of the real held-out images as FAKE: R-precision only, the cell's matcher."""
    fake = cell_dir / "real_as_fake"
    return [sys.executable, "-m", "facemetrics", "score", str(cell_dir / "run" / "real_test"), str(fake),
            "--metrics", "rprec", "--pairs", str(fake / "pairs.jsonl"), "--matcher", matcher,
            "--label", f"{cell_dir.name} (real images)", "--json", str(cell_dir / "metrics_real.json"),
            "--device", device, "--seed", str(o.score_seed), "-q"]


def _same_checkpoint(rec: dict, c: dict, record: Path, samples_meta: Path) -> bool:
    """Whether a score record is of the samples of the cell's current checkpoint (the pairs file
    alone does not say: its rows are the same for every checkpoint). Records written before the
    manifest kept the checkpoint's sha256: the record must be newer than the samples."""
    if "checkpoint_sha256" in rec:
        return rec["checkpoint_sha256"] == (c.get("train") or {}).get("checkpoint_sha256")
    return samples_meta.is_file() and record.stat().st_mtime >= samples_meta.stat().st_mtime


def _real_scored(c: dict, cell_dir: Path) -> bool:
    r, s = c.get("real_rprec") or {}, c.get("score") or {}
    pairs, rec = cell_dir / "samples" / "pairs.jsonl", cell_dir / "metrics_real.json"
    return (rec.is_file() and pairs.is_file() and r.get("matcher") == s.get("matcher")
            and r.get("pairs_sha256") == _sha256(pairs)
            and r.get("checkpoint_sha256") == (c.get("train") or {}).get("checkpoint_sha256"))


def _train_finished(c: dict, run: Path) -> bool:
    t = c.get("train") or {}
    ck = run / "last.pt"
    return t.get("status") in FINISHED_TRAIN and ck.is_file() and t.get("checkpoint_sha256") == _sha256(ck)


def _generated(c: dict, samples: Path) -> bool:
    meta, pairs = samples / "generate.json", samples / "pairs.jsonl"
    if not (meta.is_file() and pairs.is_file()):
        return False
    try:
        g = json.loads(meta.read_text())
    except ValueError:
        return False
    n = sum(1 for line in pairs.read_text().splitlines() if line.strip())
    return g.get("checkpoint_sha256") == (c.get("train") or {}).get("checkpoint_sha256") and g.get("n_images") == n


def _scored(c: dict, cell_dir: Path) -> bool:
    rec_path, pairs = cell_dir / "metrics.json", cell_dir / "samples" / "pairs.jsonl"
    s = c.get("score") or {}
    if not (rec_path.is_file() and pairs.is_file()) or s.get("pairs_sha256") != _sha256(pairs):
        return False
    try:
        rec = json.loads(rec_path.read_text())
    except ValueError:
        return False
    have = {k for k, v in (rec.get("metrics") or {}).items() if v is not None}
    return (str(rec.get("schema", "")).startswith("facemetrics.record/") and set(s.get("metrics", ["?"])) <= have
            and _same_checkpoint(s, c, rec_path, cell_dir / "samples" / "generate.json"))


@dataclass
class _CellRun:
    """What the stages of one cell share: its folders, the child environment and the manifest."""
    cell: Cell
    o: SweepOptions
    man: Manifest
    device: str
    say: Callable[[str], None]
    d: Path  # the cell's folder, OUT/CELL

    @property
    def run(self) -> Path:
        return self.d / "run"

    @property
    def samples(self) -> Path:
        return self.d / "samples"

    @property
    def logs(self) -> Path:
        return self.d / "logs"

    @property
    def tag(self) -> str:
        return f"[{self.cell.index + 1}/{len(self.man.data['cells'])}] {self.cell.name}"

    def c(self) -> dict:
        return self.man.cell(self.cell.name)

    def env(self) -> dict:
        return _env(self.o.threads)

    def threads(self) -> list[str]:
        return ["--threads", str(self.o.threads)] if self.o.threads else []


def run_cell(cell: Cell, out: Path, o: SweepOptions, man: Manifest, device: str, ci: list[str],
             say: Callable[[str], None]) -> None:
    """Train → generate → score → real-image R-precision → grid for one cell, skipping finished stages
    (module docstring)."""
    r = _CellRun(cell, o, man, device, say, out / cell.name)
    _train_stage(r)
    _generate_stage(r)
    _score_stage(r, ci)
    _real_rprec_stage(r)
    _grid_stage(r)
    man.update(cell.name, status="scored", error=None)


def _train_stage(r: _CellRun) -> None:
    """Train the cell under its budget, resuming an interrupted run; not rerun once finished."""
    c, run, py = r.c(), r.run, [sys.executable, "-m"]
    if _train_finished(c, run):
        r.say(f"{r.tag}: trained ({c['train']['status']}, step {c['train']['step']}), not rerun")
        return
    r.d.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(r.cell.config)
    cfg["device"] = r.device
    atomic_write_text(r.d / "config.yaml", C.to_yaml(cfg))
    if (run / "last.pt").is_file():
        r.say(f"{r.tag}: resuming the interrupted training (budget {r.o.minutes} min in all)")
        argv = py + ["models", "train", "--resume", str(run), "--device", r.device, "--quiet", *r.threads(),
                     "--set", f"train.budget_minutes={float(r.o.minutes)!r}"]
    else:
        if run.exists():  # died before its first checkpoint: start over
            import shutil

            shutil.rmtree(run)
        r.say(f"{r.tag}: training (budget {r.o.minutes} min)")
        argv = py + ["models", "train", "--config", str(r.d / "config.yaml"), "--out", str(run), "--quiet",
                     *r.threads()]
    r.man.update(r.cell.name, status="training", train_invocations=c.get("train_invocations", 0) + 1, error=None)
    res = _last_json(_run(argv, r.logs / "train.log", r.env()))
    r.man.update(r.cell.name, status="trained",
                 train={**{k: res.get(k) for k in ("status", "step", "gan_step", "train_seconds")},
                        "checkpoint_sha256": _sha256(run / "last.pt"), "data": _data_stats(run)})
    r.say(f"{r.tag}: {res.get('status')} at step {res.get('step')} (GAN step {res.get('gan_step')}, "
          f"{res.get('train_seconds')} s)")


def _generate_stage(r: _CellRun) -> None:
    """One image per held-out caption from the cell's last checkpoint; not rerun when its samples match."""
    if _generated(r.c(), r.samples):
        return
    argv = [sys.executable, "-m", "models", "generate", "--checkpoint", str(r.run / "last.pt"), "--captions", "test",
            "--out", str(r.samples), "--seed", str(r.o.gen_seed), "--device", r.device, "--overwrite",
            "--quiet", *r.threads()] + (["--limit", str(r.o.limit)] if r.o.limit else [])
    res = _last_json(_run(argv, r.logs / "generate.log", r.env()))
    r.man.update(r.cell.name, status="generated",
                 generate={k: res.get(k) for k in ("n_images", "truncated_captions", "step")})
    r.say(f"{r.tag}: generated {res.get('n_images')} images ({res.get('truncated_captions')} captions truncated)")


def _score_metrics(r: _CellRun, pairs_rows: list[dict]) -> tuple[list[str], dict, str | None, str]:
    """``(metrics, skipped, matcher, matcher_source)``: the asked metrics less those the cell cannot have."""
    metrics, skipped = list(r.o.metrics), {}
    matcher, source = r.o.matcher, "given"
    if r.o.matcher is None:
        matcher, source = own_matcher(r.cell.config, r.run / "last.pt"), "own"
    if "rprec" in metrics:
        problem = rprec_problem(pairs_rows)
        if problem is None and matcher is None:
            problem = "the run has no DAMSM encoders (clip-clip) and no --matcher was given"
        if problem:
            metrics.remove("rprec")
            skipped["rprec"] = problem
            r.say(f"{r.tag}: R-precision left out: {problem}")
    if "clipscore" in metrics and matcher is None:
        metrics.remove("clipscore")
        skipped["clipscore"] = "no matcher (clip-clip run without --matcher)"
    if not metrics:
        raise StageFailed(f"no metric left to score ({skipped})")
    return metrics, skipped, matcher, source


def _score_stage(r: _CellRun, ci: list[str]) -> None:
    """``facemetrics score`` of the samples against the run's held-out real images; not rerun when scored."""
    c = r.c()
    if _scored(c, r.d):
        r.say(f"{r.tag}: scored, not rerun")
        return
    pairs_rows = [json.loads(x) for x in (r.samples / "pairs.jsonl").read_text().splitlines() if x.strip()]
    metrics, skipped, matcher, source = _score_metrics(r, pairs_rows)
    uses_matcher = any(m in ("rprec", "clipscore") for m in metrics)
    _run(score_argv(r.d, r.o, metrics, matcher, score_device(r.device), ci), r.logs / "score.log", r.env())
    r.man.update(r.cell.name, status="scored",
                 score={"metrics": metrics, "skipped": skipped, "matcher": matcher if uses_matcher else None,
                        "matcher_source": source if uses_matcher else None,
                        "pairs_sha256": _sha256(r.samples / "pairs.jsonl"), "record": str(r.d / "metrics.json"),
                        "checkpoint_sha256": c["train"]["checkpoint_sha256"]})
    r.say(f"{r.tag}: scored {','.join(metrics)}")


def _real_rprec_stage(r: _CellRun) -> None:
    """R-precision of the real held-out images with the same matcher (the matcher's own quality)."""
    c = r.c()
    s = c.get("score") or {}
    if "rprec" not in s.get("metrics", []) or not s.get("matcher"):
        return
    if _real_scored(c, r.d):
        r.say(f"{r.tag}: real-image R-precision scored, not rerun")
        return
    write_real_pairs(r.samples / "pairs.jsonl", r.d / "real_as_fake")
    _run(real_score_argv(r.d, r.o, s["matcher"], score_device(r.device)), r.logs / "score_real.log", r.env())
    rec = json.loads((r.d / "metrics_real.json").read_text())["metrics"]["rprec"]
    r.man.update(r.cell.name, real_rprec={"value": rec["value"], "std": rec.get("std"), "n": rec.get("n"),
                                          "matcher": s["matcher"], "record": str(r.d / "metrics_real.json"),
                                          "pairs_sha256": _sha256(r.samples / "pairs.jsonl"),
                                          "checkpoint_sha256": c["train"]["checkpoint_sha256"]})
    r.say(f"{r.tag}: R-precision of the real held-out images {rec['value']:.4f}")


def _grid_stage(r: _CellRun) -> None:
    """``grid.png``: 8 samples next to their real images (seeded by the generate seed), redrawn when stale."""
    grid, pairs = r.d / "grid.png", r.samples / "pairs.jsonl"
    if grid.is_file() and grid.stat().st_mtime >= pairs.stat().st_mtime:
        return
    from facemetrics.report.plots import grid_from_manifest, png_bytes
    from facemetrics.storage.atomic import atomic_write_bytes

    atomic_write_bytes(grid, png_bytes(grid_from_manifest(pairs, r.samples, n=8, seed=r.o.gen_seed)))


def _data_stats(run: Path) -> dict | None:
    """The ``data`` entry of the run's start event (what the loader found)."""
    try:
        for line in (run / "log.jsonl").read_text().splitlines():
            obj = json.loads(line)
            if obj.get("event") == "start":
                return obj.get("data")
    except (OSError, ValueError):
        return None
    return None


# ----------------------------------------------------------------------------- report

def write_report(out: Path, man: Manifest, o: SweepOptions, cells: Sequence[Cell]) -> str:
    """``report.md``/``.csv``/``.html`` ranking the scored cells; returns the markdown."""
    from facemetrics.report.tables import build_table, load_records, to_markdown

    entries = man.data["cells"]
    scored = [e for e in entries if e.get("status") == "scored" and (out / e["name"] / "metrics.json").is_file()]
    head = _report_head(out, man.data["spec"], entries, scored)
    md = "\n".join(head)
    table = None
    if scored:
        table = build_table(load_records([out / e["name"] / "metrics.json" for e in scored]), sort=o.sort, force=True)
        md += f"\n## Ranking (best first by {table.headers[_metric_key(o.sort, table)]})\n\n" + to_markdown(table)
    rank = {name: i + 1 for i, name in enumerate(table.values.index)} if table is not None else {}
    cells_df = _cells_frame(entries, rank)
    md += "\n## Cells\n\n" + _md_table(cells_df) + "\n"
    atomic_write_text(out / "report.md", md)
    if table is not None:
        atomic_write_text(out / "report.csv", _report_csv(table, entries, man.data["spec"]))
        atomic_write_text(out / "report.html", _report_html(out, table, rank, head, cells_df))
    return md


def _report_head(out: Path, spec: dict, entries: list[dict], scored: list[dict]) -> list[str]:
    """The report's opening paragraphs: config, grid, budget, seeds and which matcher R-precision used."""
    own = any((e.get("score") or {}).get("matcher_source") == "own" for e in scored)
    axes_txt = " × ".join("%s ∈ {%s}" % (g["key"], ", ".join(g["raw"])) for g in spec["grid"])
    sets = " ".join("--set " + x for x in spec["base_overrides"])
    limit = f" (the first {spec['limit']})" if spec["limit"] else ""
    head = [f"# Sweep {out}", "",
            f"Config {'`%s`' % spec['config_file'] if spec['config_file'] else 'defaults'}"
            f"{' with ' + sets if sets else ''}; grid {axes_txt} ({len(entries)} "
            f"cells); training budget {spec['minutes']} min per cell (wall time, DAMSM stage included); samples: "
            f"one per held-out caption{limit}, generate seed {spec['seeds']['generate']}, score seed "
            f"{spec['seeds']['score']}; FID clean preset against each run's held-out real images (`run/real_test`).",
            ""]
    if "rprec" in spec["metrics"]:
        if spec["matcher"]:
            head += [f"R-precision: one matcher for every cell, `{spec['matcher']}`.", ""]
        elif own:
            head += ["R-precision: each cell's **own** DAMSM matcher (`damsm:CELL/run/last.pt`): it compares "
                     "checkpoints of one cell, not cells with each other (different matchers; the protocol "
                     "notes below list them). Pass `--matcher SPEC` for a fixed matcher.", ""]
        head += ["\"R-prec of real images\" (Cells table): the same matcher, captions, negatives and seed on the "
                 "real held-out image each caption describes instead of the generated one: the matcher's own "
                 "quality (chance is 0.01).", ""]
    return head


def _cells_frame(entries: list[dict], rank: dict[str, int]):
    """The Cells table (every cell, ranked ones first): status, training, matcher, notes."""
    import pandas as pd

    rows = []
    for e in entries:
        t, s = e.get("train") or {}, e.get("score") or {}
        rows.append({"rank": rank.get(e["name"], ""), "cell": e["name"], "status": e.get("status"),
                     "train": t.get("status") or "", "step": t.get("step", ""), "gan step": t.get("gan_step", ""),
                     "train s": t.get("train_seconds", ""),
                     "R-prec matcher": s.get("matcher_source") or "",
                     "R-prec of real images": _pm(e.get("real_rprec")),
                     "notes": "; ".join([f"{k} left out: {v}" for k, v in (s.get("skipped") or {}).items()]
                                        + ([f"error: {e['error']}"] if e.get("error") else []))})
    return pd.DataFrame(rows).sort_values(["rank"], key=lambda x: x.map(lambda v: v if v != "" else 1e9),
                                          kind="stable")


def _report_csv(table, entries: list[dict], spec: dict) -> str:
    """The ranking at full precision, with each cell's overrides, training and real-image R-precision."""
    import pandas as pd

    by_name = {e["name"]: e for e in entries}
    csv = pd.DataFrame(index=pd.Index(list(table.values.index), name="cell"))
    csv.insert(0, "rank", range(1, len(csv) + 1))
    for g in spec["grid"]:
        csv[g["key"]] = [by_name[n]["overrides"][g["key"]] for n in csv.index]
    for k, col in (("status", "train_status"), ("step", "step"), ("gan_step", "gan_step"),
                   ("train_seconds", "train_seconds")):
        csv[col] = [(by_name[n].get("train") or {}).get(k) for n in csv.index]
    for m in table.metrics:
        csv[m] = table.values[m]
        csv[f"{m}_std"] = table.stds[m]
    csv["rprec_real"] = [(by_name[n].get("real_rprec") or {}).get("value") for n in csv.index]
    csv["rprec_real_std"] = [(by_name[n].get("real_rprec") or {}).get("std") for n in csv.index]
    csv["rprec_matcher"] = [(by_name[n].get("score") or {}).get("matcher") for n in csv.index]
    return csv.to_csv(lineterminator="\n")


def _report_html(out: Path, table, rank: dict[str, int], head: list[str], cells_df) -> str:
    """The HTML page: the ranking, the Cells table and each ranked cell's sample grid."""
    import html as _html

    from facemetrics.report.tables import to_html

    images = []
    for n in table.values.index:
        g = out / n / "grid.png"
        if g.is_file():
            images.append((f"{rank[n]}. {n}: generated (left) next to real", g.read_bytes()))
    page = to_html(table, title=f"Sweep {out.name}", images=images)
    intro = "".join(f"<p>{_html.escape(p)}</p>" for p in head[2:] if p)
    cells_html = "<h2>Cells</h2>" + cells_df.to_html(index=False, escape=True, border=0)
    return page.replace("</h1>", "</h1>" + intro, 1).replace("<h2>", cells_html + "<h2>", 1) \
        if "<h2>" in page else page.replace("</body>", cells_html + "</body>", 1)


def _pm(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return ""
    return f"{r['value']:.4f}" + (f" ± {r['std']:.4f}" if r.get("std") is not None else "")


def _metric_key(name: str, table) -> str:
    for m in table.metrics:
        if m == name:
            return m
    return table.metrics[0]


def _md_table(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- driver

def sweep(o: SweepOptions, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep ``o`` describes; returns ``{"cells", "scored", "failed", "report"}``."""
    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _check_options(o)
    axes = parse_grid(o.grid)
    base = base_config(o)
    cells = build_cells(axes, base)
    out = Path(o.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FacemetricsError(f"{out} is a file", "--out")
    ci = ci_arguments(o.ci, lambda m: say(f"warning: {m}"))
    spec = sweep_spec(o, axes, base)
    man = Manifest.open(out, spec, cells)
    devices = list(o.devices or [o.device])
    slots: queue.Queue = queue.Queue()
    for i in range(max(o.parallel, 1)):
        slots.put(devices[i % len(devices)])
    say(f"sweep {out}: {len(cells)} cells x {o.minutes} min, {o.parallel} at a time on {', '.join(devices)}")

    def one(cell: Cell) -> None:
        dev = slots.get()
        try:
            run_cell(cell, out, o, man, dev, ci, say)
        except (StageFailed, FacemetricsError) as e:
            man.update(cell.name, status="failed", error=str(e)[:2000])
            say(f"[{cell.index + 1}/{len(cells)}] {cell.name}: FAILED: {e}")
        except BaseException as e:  # interrupted: the manifest says so, the checkpoint stays for the rerun
            man.update(cell.name, status="interrupted", error=type(e).__name__)
            raise
        finally:
            slots.put(dev)

    if o.parallel == 1:
        for cell in cells:
            one(cell)
    else:
        with ThreadPoolExecutor(max_workers=o.parallel) as pool:
            for f in [pool.submit(one, c) for c in cells]:
                f.result()
    md = write_report(out, man, o, cells)
    status = [c["status"] for c in man.data["cells"]]
    man.save(finished=_now())
    return {"cells": len(cells), "scored": status.count("scored"), "failed": status.count("failed"),
            "report": str(out / "report.md"), "markdown": md}
