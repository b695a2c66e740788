"""Data-parallel training under torchrun: one global batch split across ranks, same result.

``torchrun --nproc-per-node K -m models train ...`` starts K copies of the trainer. Each
step's global batch (``train.batch_size`` or ``damsm.batch_size`` items, the very keys a
single process would draw, see :class:`models.data.StepBatchSampler`) is cut into K
contiguous blocks of ``B/K`` items; rank ``r`` loads block ``r``. The run is then the
same computation as one process on the whole batch, up to floating-point summation order:

* **Gradients** are averaged over ranks (``all_reduce`` of the flattened gradients,
  ``/K``) after every backward and before the optimiser step, as DDP does. Networks are
  not wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`: a GAN step runs
  D several times per backward and back-propagates G's loss through frozen Ds, which
  DDP's hooks do not model; the explicit all-reduce (as in NVIDIA's StyleGAN2-ADA
  trainer) is the same arithmetic.
* **Loss convention**: every rank's loss is defined so that the *mean over ranks* of the
  rank losses is the single-process loss of the global batch. Per-item means stay local
  means (equal block sizes); cross-item terms see the global batch through differentiable
  collectives whose backward sums over ranks (:func:`gather_rows`, :func:`all_reduce_sum`),
  so the averaged gradient is the gradient of the single-process loss.
* **Batch norm** in training mode normalises with the *global* batch statistics
  (:class:`SyncBatchNorm1d`/``2d``; two-pass mean/variance through differentiable
  all-reduces, works on gloo and NCCL; ``torch.nn.SyncBatchNorm`` is CUDA-only). Running
  statistics are updated exactly as :class:`torch.nn.BatchNorm2d` would on the whole
  batch. State-dict keys are unchanged, so checkpoints move freely between 1 and K ranks.
* **Randomness**: every rank keeps the same RNG state; random tensors (z, the
  conditioning-augmentation ε, dropout masks) are drawn for the global batch on every
  rank and each rank takes its rows, so the draws equal the single process's.
* **Files**: rank 0 writes checkpoints, logs, grids and evaluations (under
  ``fork_rng``, so they do not move the shared RNG); the others wait at a barrier.

The process group comes from :func:`facemetrics.pipeline.distributed.session` (gloo on the CPU,
NCCL on CUDA with device ``cuda:LOCAL_RANK``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from facemetrics.pipeline.distributed import DistContext
from facemetrics.errors import FacemetricsError


@dataclass(frozen=True)
class Parallel(DistContext):
    """The process's :class:`~facemetrics.pipeline.distributed.DistContext` (rank, world, barrier,
    check_same, ...) plus the tensor collectives of data-parallel training, which run on the
    default process group (gloo on the CPU, NCCL on CUDA)."""

    @classmethod
    def of(cls, ctx: DistContext) -> "Parallel":
        return cls(**{f.name: getattr(ctx, f.name) for f in fields(ctx)})

    def local_size(self, global_batch: int, param: str = "--set train.batch_size") -> int:
        """Items per rank; the global batch must split evenly."""
        if global_batch % self.world:
            raise FacemetricsError(
                f"batch size {global_batch} does not split evenly over {self.world} processes; use a multiple "
                f"of {self.world} (the global batch is the same whatever the number of processes)", param)
        return global_batch // self.world

    def rows(self, global_batch: int) -> slice:
        """This rank's block of a global batch of ``global_batch`` items."""
        n = global_batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    # ---------------------------------------------------------------- collectives
    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of every rank, in rank order (differentiable; identity for one process)."""
        return gather_rows(x) if self.active else x

    def all_reduce_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over ranks (in place, one flat all-reduce)."""
        if not self.active:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world)
        off = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[off:off + n].view_as(g))
            off += n

    def mean(self, values: Sequence[float]) -> list[float]:
        """Mean over ranks of a few numbers (loss logs)."""
        if not self.active or not values:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on some rank (stop decisions)."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values into every rank's ``tensors`` (start/resume sync)."""
        if not self.active:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t.data, 0)

    @staticmethod
    def _comm_device() -> torch.device:
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE = Parallel()


# ----------------------------------------------------------------------------- autograd collectives

class _AllReduceSum(torch.autograd.Function):
    """``y = Σ_ranks x``; backward: ``∂/∂x = Σ_ranks ∂L_r/∂y`` (each rank's loss uses y)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        g = g.clone()
        dist.all_reduce(g)
        return g


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows (equal shapes); backward sums the gradient of the whole
    gathered tensor over ranks and returns this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        world, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rows = (rank * x.size(0), (rank + 1) * x.size(0))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        g = g.contiguous().clone()
        dist.all_reduce(g)
        a, b = ctx.rows
        return g[a:b]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather along dim 0 (bool/int tensors: no gradient)."""
    if not x.is_floating_point():
        import torch.distributed as dist

        y = x.to(torch.uint8) if x.dtype == torch.bool else x
        parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, y.contiguous())
        out = torch.cat(parts)
        return out.bool() if x.dtype == torch.bool else out
    return _GatherRows.apply(x)


# ----------------------------------------------------------------------------- batch norm

class _SyncBatchNorm:
    """Batch norm over the global batch (training mode); eval mode is plain batch norm.

    ``μ = Σ_r Σ x / N``, ``σ² = Σ_r Σ (x − μ)² / N`` (two passes, both through
    :func:`all_reduce_sum`, so the result is stable and differentiable),
    ``y = (x − μ) / √(σ² + ε) · γ + β``; running mean/var move by ``momentum`` towards
    ``μ`` and the unbiased ``σ² · N / (N − 1)``, as in :class:`torch.nn.BatchNorm2d`.
    Ranks may hold different numbers of items (even none).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        self._check_input_dim(x)  # type: ignore[attr-defined]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        n_local = xf.numel() // max(xf.size(1), 1)
        s = all_reduce_sum(torch.cat([xf.sum(dims), xf.new_tensor([float(n_local)])]))
        count = s[-1].detach()
        mean = s[:-1] / count
        var = all_reduce_sum(((xf - mean.view(shape)) ** 2).sum(dims)) / count
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)  # type: ignore[attr-defined]
        if self.affine:  # type: ignore[attr-defined]
            y = y * self.weight.view(shape) + self.bias.view(shape)  # type: ignore[attr-defined]
        if self.track_running_stats:  # type: ignore[attr-defined]
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
                m = self.momentum  # type: ignore[attr-defined]
                f = 1.0 / float(self.num_batches_tracked) if m is None else m  # type: ignore[attr-defined]
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), f)  # type: ignore[attr-defined]
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)  # type: ignore[attr-defined]
        return y.to(x.dtype)


class SyncBatchNorm1d(_SyncBatchNorm, nn.BatchNorm1d):
    pass


class SyncBatchNorm2d(_SyncBatchNorm, nn.BatchNorm2d):
    pass


_SYNC = {nn.BatchNorm1d: SyncBatchNorm1d, nn.BatchNorm2d: SyncBatchNorm2d}


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm1d/2d of ``module`` (recursively) for its global-batch version,
    keeping the same parameter and buffer objects (optimisers and EMA copies stay valid)."""
    cls = _SYNC.get(type(module))
    if cls is not None:
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                  device=None)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_sync_batchnorm(child)
        if new_child is not child:
            module.add_module(name, new_child)
    return module


# ----------------------------------------------------------------------------- dropout

class BatchDropout(nn.Dropout):
    """Inverted dropout whose keep mask is drawn for the *global* batch, rows taken for this rank.

    ``keep = U(0, 1) ≥ p`` over a tensor of ``world × B_local`` rows (every rank draws the
    same), ``y = x · keep[rows] / (1 − p)``. With one process this is ordinary dropout;
    :func:`convert_for_parallel` tells it the run's :class:`Parallel`.
    """

    parallel: Parallel = SINGLE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        par = self.parallel
        B = x.size(0) * par.world
        keep = torch.rand((B, *x.shape[1:]), device=x.device) >= self.p
        keep = keep[par.rows(B)]
        return x * keep.to(x.dtype) / (1.0 - self.p)


def convert_for_parallel(module: nn.Module, par: Parallel) -> nn.Module:
    """Global-batch batch norm and dropout in ``module`` for a run of ``par.world`` ranks."""
    for m in module.modules():
        if isinstance(m, BatchDropout):
            m.parallel = par
    return convert_sync_batchnorm(module) if par.active else module
