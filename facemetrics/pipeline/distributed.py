"""Running on several processes with torch.distributed (torchrun), and sharding.

``torchrun --nproc-per-node K -m facemetrics score REAL FAKE ...`` starts K copies
of the CLI with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`session` sees them, joins the
process group and returns a :class:`DistContext`; without them (a plain run) it
returns a context of one process whose collectives are identities, so the same
code serves both.

Conventions
-----------
* **Shards are contiguous blocks** of the sorted file list:
  shard ``k`` of ``K`` (0-based) holds ``names[n*k//K : n*(k+1)//K]``. The same
  rule splits the files among torchrun ranks and among ``--shard I/N`` jobs
  (``I`` is 1-based there), so concatenating shards in order restores the file
  order exactly, and shard ``I/N`` of a folder holds the same files as rank
  ``I-1`` of an ``N``-process run (their feature-cache entries are shared).
* **Statistics** (float64 n, Σx, Σxxᵀ) are summed with ``all_reduce``;
  **per-image rows** (KID features, IS logits, embeddings) are gathered in rank
  order, which is file order.
* **Backends**: ``gloo`` when the device is the CPU; for CUDA the default group is
  ``nccl`` (device ``cuda:LOCAL_RANK``) and facemetrics' own collectives run on a
  ``gloo`` side group over CPU tensors (statistics are float64 host arrays).
* **Failures**: work that may fail on one rank runs under
  :meth:`DistContext.run_agreed`: every rank reports success or its error before
  any result is combined, so one rank's error (an unreadable image under
  ``--strict``, a missing file, a bug) stops *every* rank with a message naming
  that rank, instead of leaving the others waiting. A rank that dies (killed,
  out of memory) makes the others' next collective fail, or time out after
  ``$FACEMETRICS_DIST_TIMEOUT`` seconds (default 1800); that is reported as
  :class:`~facemetrics.errors.DistributedError`. Results are only combined after
  every rank's part has arrived and been counted, and only rank 0 writes files,
  so no record or statistics file is ever built from part of the data.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from facemetrics.errors import DistributedError, FacemetricsError

T = TypeVar("T")

#: seconds a collective waits for the other ranks before failing
DEFAULT_TIMEOUT_S = 1800.0


# --------------------------------------------------------------------------- environment

def env_info() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) from torchrun's variables; (0, 1, 0, 1) without."""
    def _int(name: str, default: int) -> int:
        v = os.environ.get(name)
        try:
            return int(v) if v not in (None, "") else default
        except ValueError:
            raise FacemetricsError(f"environment variable {name}={v!r} is not an integer") from None

    world = _int("WORLD_SIZE", 1)
    rank = _int("RANK", 0)
    local_rank = _int("LOCAL_RANK", rank)
    local_world = _int("LOCAL_WORLD_SIZE", world)
    return rank, world, local_rank, local_world


def current_rank() -> int:
    """This process's rank: the process group's when one is initialised, else torchrun's RANK, else 0."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    return env_info()[0]


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not part of a distributed run). Imports nothing heavy."""
    return current_rank() == 0


def shared_error(message: str, param: str | None = None) -> FacemetricsError:
    """A user error that every rank raises alike (it follows from data all ranks share).

    Marked ``agreed`` so that under torchrun the CLI reports it once, from rank 0.
    """
    err = FacemetricsError(message, param)
    err.agreed = True  # type: ignore[attr-defined]
    return err


def timeout_s() -> float:
    v = os.environ.get("FACEMETRICS_DIST_TIMEOUT")
    if not v:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(v)
    except ValueError:
        raise FacemetricsError(f"FACEMETRICS_DIST_TIMEOUT={v!r} is not a number of seconds") from None
    if t <= 0:
        raise FacemetricsError(f"FACEMETRICS_DIST_TIMEOUT must be positive, got {v}")
    return t


# --------------------------------------------------------------------------- shards

def shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """[start, stop) of shard ``index`` (0-based) of ``count`` over ``n`` items (contiguous, sizes differ by ≤ 1)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return n * index // count, n * (index + 1) // count


def shard_names(names: Sequence[str], rank: int, world: int) -> list[str]:
    """The contiguous block of ``names`` that rank ``rank`` of ``world`` (0-based) handles."""
    a, b = shard_bounds(len(names), rank, world)
    return list(names[a:b])


def names_digest(names: Sequence[str]) -> str:
    """sha256 of a file list (order-sensitive), to compare listings cheaply."""
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode() + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------- context

@dataclass(frozen=True)
class DistContext:
    """One process's place in the run; collectives are identities when ``world == 1``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: str = "cpu"
    backend: str | None = None
    _group: Any = field(default=None, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def label(self) -> str:
        return f"rank {self.rank} of {self.world}"

    # ---------------------------------------------------------------- guarded collectives
    def _collective(self, step: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (FacemetricsError, KeyboardInterrupt):
            raise
        except Exception as e:  # gloo/nccl errors: a peer died, a connection broke, a timeout
            raise DistributedError(
                f"{self.label()}: the distributed run broke during {step}: another rank died, was killed or "
                f"did not answer within {timeout_s():.0f} s ({type(e).__name__}: {str(e).strip()[:300]}). "
                "Nothing was written. Re-run; features finished before the failure are in the feature cache."
            ) from e

    def gather_objects(self, obj: Any, step: str) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        self._collective(step, lambda: dist.all_gather_object(out, obj, group=self._group))
        return out

    def all_reduce_sum(self, array: np.ndarray, step: str) -> np.ndarray:
        """Element-wise float64 sum of ``array`` over the ranks."""
        x = np.ascontiguousarray(array, dtype=np.float64)
        if not self.active:
            return x.copy()
        import torch
        import torch.distributed as dist

        t = torch.from_numpy(x.copy())
        self._collective(step, lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self._group))
        return t.numpy()

    def gather_rows(self, rows: np.ndarray | None, step: str) -> np.ndarray:
        """Concatenate every rank's rows in rank order (ranks may hold different counts, or none).

        ``rows`` is an (n, ...) array, or ``None`` for a rank without rows; all
        non-empty parts must agree in trailing shape and dtype.
        """
        if not self.active:
            return rows if rows is not None else np.zeros((0,))
        import torch
        import torch.distributed as dist

        meta = None if rows is None or len(rows) == 0 else (len(rows), tuple(rows.shape[1:]), rows.dtype.str)
        metas = self.gather_objects(meta, f"{step} (sizes)")
        shapes = {(m[1], m[2]) for m in metas if m is not None}
        if len(shapes) > 1:
            raise DistributedError(f"{self.label()}: ranks produced rows of different shapes in {step}: "
                                   + ", ".join(f"rank {r}: {m}" for r, m in enumerate(metas)))
        if not shapes:
            return rows if rows is not None else np.zeros((0,))
        tail, dtype_str = shapes.pop()
        dtype = np.dtype(dtype_str)
        wire = np.uint8 if dtype == np.bool_ else dtype  # gloo moves bytes; bool via uint8
        counts = [0 if m is None else m[0] for m in metas]
        top = max(counts)
        buf = np.zeros((top, *tail), dtype=wire)
        if rows is not None and len(rows):
            buf[: len(rows)] = rows
        t = torch.from_numpy(buf)
        parts = [torch.empty_like(t) for _ in range(self.world)]
        self._collective(step, lambda: dist.all_gather(parts, t, group=self._group))
        out = np.concatenate([p.numpy()[:c] for p, c in zip(parts, counts)])
        return out.astype(np.bool_) if dtype == np.bool_ else out

    def barrier(self, step: str) -> None:
        if self.active:
            import torch.distributed as dist

            self._collective(step, lambda: dist.barrier(group=self._group))

    # ---------------------------------------------------------------- agreement
    def run_agreed(self, step: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank, then stop all ranks if it failed on any.

        Each rank reports ``ok`` or its error. If every failing rank raised a
        :class:`FacemetricsError` (a user mistake), all ranks raise one naming the
        ranks and their messages (the CLI shows it once, from rank 0). If a rank
        crashed, that rank re-raises its own exception (traceback kept) and the
        others raise :class:`DistributedError` naming it.
        """
        if not self.active:
            return fn()
        result: Any = None
        own: BaseException | None = None
        status: tuple[str, str, str | None] | None = None
        try:
            result = fn()
        except FacemetricsError as e:
            own, status = e, ("user", str(e), e.param)
        except Exception as e:
            own, status = e, ("crash", f"{type(e).__name__}: {e}", None)
        statuses = self.gather_objects(status, f"{step} (status exchange)")
        failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
        if not failed:
            return result
        if own is not None and status is not None and status[0] == "crash":
            raise own
        by_msg: dict[str, list[int]] = {}
        for r, s in failed:
            by_msg.setdefault(s[1], []).append(r)
        parts = []
        for msg, ranks in by_msg.items():
            who = "every rank" if len(ranks) == self.world else "rank" + ("s " if len(ranks) > 1 else " ") + \
                ", ".join(map(str, ranks))
            parts.append(f"{who} (of {self.world}): {msg}" if len(by_msg) > 1 or len(ranks) < self.world else msg)
        text = "\n".join(parts)
        if all(s[0] == "user" for _, s in failed):
            raise shared_error(text, failed[0][1][2])  # every rank raises it: the CLI shows it once
        raise DistributedError(f"{step} failed on another rank; nothing was written.\n{text}")

    def on_main(self, step: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result (picklable) to every rank.

        For pure work on data every rank already holds (metric computations, the
        record), so that K ranks of a node do not compute the same thing K times.
        Rank 0's error reaches every rank: a user error as an agreed
        :class:`FacemetricsError`, anything else as :class:`DistributedError`.
        """
        if not self.active:
            return fn()
        import torch.distributed as dist

        payload: Any = None
        own: BaseException | None = None
        if self.is_main:
            try:
                payload = ("ok", fn())
            except FacemetricsError as e:
                own, payload = e, ("user", str(e), e.param)
            except Exception as e:
                own, payload = e, ("crash", f"{type(e).__name__}: {e}", None)
        box = [payload]
        self._collective(step, lambda: dist.broadcast_object_list(box, src=0, group=self._group))
        kind, value, *rest = box[0]
        if kind == "ok":
            return value
        if own is not None:
            raise own
        if kind == "user":
            raise shared_error(value, rest[0] if rest else None)
        raise DistributedError(f"{self.label()}: {step} failed on rank 0: {value}")

    def check_same(self, what: str, value: Any, param: str | None = None) -> None:
        """Refuse to go on when the ranks disagree on ``value`` (file lists, options, networks)."""
        if not self.active:
            return
        values = self.gather_objects(value, f"checking {what}")
        if any(v != values[0] for v in values):
            listing = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise shared_error(f"the ranks disagree on {what} (every rank must see the same inputs): {listing}",
                               param)


SINGLE = DistContext()


def _device_for(device: str, local_rank: int, active: bool) -> str:
    if not device.startswith("cuda") or not active or ":" in device:
        return device
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise FacemetricsError("--device cuda was asked for but no CUDA device is available", "--device")
    if local_rank >= count:
        warnings.warn(f"local rank {local_rank} but only {count} CUDA device(s): ranks share cuda:"
                      f"{local_rank % count} (start fewer processes per node for full speed)", stacklevel=3)
    return f"cuda:{local_rank % count}"


_LOCAL_ONLY = [False]


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Inside this block :func:`session` ignores any process group: one rank (e.g. rank 0
    of a distributed training run evaluating its samples) scores on its own."""
    old = _LOCAL_ONLY[0]
    _LOCAL_ONLY[0] = True
    try:
        yield
    finally:
        _LOCAL_ONLY[0] = old


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[DistContext]:
    """The process group of a torchrun launch (joined here, left on exit), or one process.

    An already initialised default group (a user's own script) is used as is and
    left open; facemetrics then adds a gloo side group for its collectives when
    the default backend is not gloo.
    """
    if _LOCAL_ONLY[0]:
        yield DistContext(device=device)
        return
    rank, world, local_rank, local_world = env_info()
    dist = None
    if world > 1 or "torch.distributed" in sys.modules:
        import torch.distributed as dist  # noqa: F811

        if not dist.is_available():
            raise FacemetricsError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        elif world == 1:
            dist = None
    if dist is None or world == 1:
        yield DistContext(device=device)
        return

    import torch

    dev = _device_for(device, local_rank, True)
    timeout = datetime.timedelta(seconds=timeout_s())
    owned = False
    if not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                raise FacemetricsError(f"WORLD_SIZE={world} is set but {var} is not: start the run with torchrun "
                                       "(e.g. torchrun --nproc-per-node 2 -m facemetrics score ...)")
        backend = "nccl" if dev.startswith("cuda") else "gloo"
        if dev.startswith("cuda"):
            torch.cuda.set_device(torch.device(dev))
        try:
            dist.init_process_group(backend=backend, timeout=timeout, rank=rank, world_size=world)
        except Exception as e:
            raise DistributedError(f"rank {rank} of {world}: could not join the process group at "
                                   f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                                   f"({type(e).__name__}: {e})") from e
        owned = True
    backend = dist.get_backend()
    group = None
    try:
        if backend != "gloo":
            group = dist.new_group(backend="gloo", timeout=timeout)
        yield DistContext(rank, world, local_rank, local_world, dev, backend, group)
    finally:
        if owned and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
