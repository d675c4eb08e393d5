"""Several processes, one run: the process group torchrun sets up, and the collectives
that methods and the trainer use (PyTorch ``DistributedDataParallel``).

``torchrun --nproc-per-node N -m engine train CONFIG.toml`` starts N processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init` joins them into one group (NCCL on CUDA, gloo on CPU). Outside torchrun
every function here is the single-process identity, so methods call them unconditionally.

The gradient contract (what makes N processes on N shards equal one process on the whole
batch): DDP averages gradients over the processes, so the objective is the *mean over
ranks* of each rank's loss. A method whose loss needs the whole batch gathers its
embeddings with :func:`gather`, whose backward hands each rank the *sum* of every rank's
gradient for its own rows (solo-learn's ``GatherLayer``, SimCLR's cross-replica
negatives); then a rank may compute either the whole-batch loss or its own rows' share
of it (the mean of the shares is the whole-batch mean). :func:`all_reduce_sum` obeys the
same rule, which is what :class:`SyncBatchNorm` is built on.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: environment variables torchrun (and SLURM wrappers of it) set for every process
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """Where this process stands in the run: rank ``rank`` of ``size`` processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder and yields events."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """True when started by torchrun (or anything that sets its variables) with
    more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init(device_setting: str, timeout_s: float = 600.0) -> tuple[World, torch.device]:
    """Join the process group torchrun described; the device of this process.

    CUDA (``device_setting`` 'auto' or 'cuda' with GPUs present) uses NCCL and the GPU of
    ``LOCAL_RANK``; otherwise gloo on the CPU. ``timeout_s`` bounds how long a collective
    waits for a lost peer before raising (gloo notices a dead peer's closed socket at once).
    """
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise RuntimeError("not started by torchrun: " + ", ".join(missing) + " not set")
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device_setting in ("auto", "cuda") and torch.cuda.is_available()
    if device_setting == "cuda" and not use_cuda:
        raise RuntimeError("run.device = 'cuda' but no CUDA device is visible")
    if use_cuda:
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise RuntimeError(f"LOCAL_RANK {local_rank} but this machine has {n} GPU(s): "
                               "start at most one process per GPU (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if use_cuda:
            kwargs["device_id"] = device
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **kwargs)
    return World(rank, size, local_rank, backend), device


def shutdown() -> None:
    """Leave the process group (each process, at the end of the run or on failure)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group is being left anyway
            pass


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _Gather(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        r = dist.get_rank()
        return grad[r * ctx.rows : (r + 1) * ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order (the global batch, as one
    process would see it), with gradients back to each rank's own rows. Every rank must
    pass the same shape. Without a process group: ``x`` itself."""
    if not is_distributed():
        return x
    if not x.requires_grad:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return _Gather.apply(x)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone().contiguous()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone().contiguous()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks, differentiable under the gradient contract."""
    if not is_distributed():
        return x
    if not x.requires_grad:
        y = x.clone().contiguous()
        dist.all_reduce(y)
        return y
    return _AllReduceSum.apply(x)


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of a float tensor over the ranks (no gradient): logged losses, metrics."""
    if not is_distributed():
        return values
    y = values.detach().clone().contiguous()
    dist.all_reduce(y)
    return y / dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (a run folder path, a checkpoint)."""
    if not is_distributed():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_objects_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (None elsewhere)."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any device.

    PyTorch's ``nn.SyncBatchNorm`` runs on GPUs only; this one (:class:`_SyncBatchNormFn`)
    combines each rank's count, mean and variance over the ranks in float64, so the global
    variance is as exact as single-process BatchNorm's, and also works with gloo on CPU.
    Eval mode and single-process runs behave exactly as ``nn.BatchNorm``. State-dict keys
    are BatchNorm's, so checkpoints load into either.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        running = self.track_running_stats and self.running_mean is not None \
            and self.running_var is not None and self.num_batches_tracked is not None
        f = 0.0
        if running:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            f = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                 else self.momentum)
        weight = self.weight if self.affine else None
        bias = self.bias if self.affine else None
        y = _SyncBatchNormFn.apply(input, weight, bias, self.eps,
                                   self.running_mean if running else None,
                                   self.running_var if running else None, f)
        return y


class _SyncBatchNormFn(torch.autograd.Function):
    """BatchNorm over the global batch with BatchNorm's own backward formula.

    Forward: each rank's mean and centred sum of squares (two passes, exact in float32),
    combined in float64 with Chan et al.'s parallel variance in one all-reduce. Backward:
    one all-reduce of the per-channel sums of ``dy`` and ``dy * x_hat``, then
    ``dx = w / sigma * (dy - sum dy / N - x_hat * sum(dy x_hat) / N)`` with the global
    sums, which is the gradient of every rank's loss with respect to this rank's inputs
    (the contract of the module docstring); the weight and bias gradients are this
    rank's own, which DDP averages. Written out rather than left to autograd, which
    costs 1.5x native BatchNorm here.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None,
                bias: torch.Tensor | None, eps: float, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, momentum: float) -> torch.Tensor:
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        n_r = x.numel() // c
        mean_r = xf.sum(dims) / n_r
        m2_r = torch.square(xf - mean_r.view(shape)).sum(dims)
        m64 = mean_r.double()
        packed = torch.cat([m64 * n_r, m2_r.double() + m64 * m64 * n_r,
                            m64.new_full((1,), float(n_r))])
        dist.all_reduce(packed)
        n = packed[2 * c]
        mean64 = packed[:c] / n
        var64 = (packed[c : 2 * c] / n - mean64 * mean64).clamp(min=0.0)
        if running_mean is not None and running_var is not None:
            running_mean.lerp_(mean64.to(running_mean.dtype), momentum)
            unbiased = var64 * (n / (n - 1).clamp(min=1))
            running_var.lerp_(unbiased.to(running_var.dtype), momentum)
        mean = mean64.to(xf.dtype)
        invstd = torch.rsqrt(var64 + eps).to(xf.dtype)
        scale = invstd * weight if weight is not None else invstd
        shift = -mean * scale
        if bias is not None:
            shift = shift + bias
        ctx.save_for_backward(xf, mean, invstd, weight)
        ctx.n = float(n)
        ctx.has_bias = bias is not None
        ctx.in_dtype = x.dtype
        return torch.addcmul(shift.view(shape), xf, scale.view(shape)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        xf, mean, invstd, weight = ctx.saved_tensors
        c = xf.shape[1]
        dims = [0, *range(2, xf.dim())]
        shape = [1, c] + [1] * (xf.dim() - 2)
        dy = dy.to(xf.dtype)
        xhat = (xf - mean.view(shape)) * invstd.view(shape)
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * xhat).sum(dims)
        total = torch.cat([sum_dy, sum_dy_xhat]).contiguous()
        dist.all_reduce(total)
        k = invstd * weight if weight is not None else invstd
        a = (total[:c] / ctx.n) * k
        b = (total[c:] / ctx.n) * k
        # dx = k * dy - a - b * xhat
        dx = torch.addcmul((-a).view(shape), dy, k.view(shape))
        dx = torch.addcmul(dx, xhat, (-b).view(shape)).to(ctx.in_dtype)
        dw = sum_dy_xhat if weight is not None else None
        db = sum_dy if ctx.has_bias else None
        return dx, dw, db, None, None, None, None


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` as a synchronised one: PyTorch's on CUDA, ours
    (:class:`SyncBatchNorm`) elsewhere. Parameters and buffers are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum,
                            module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
