"""Training on several processes: ``torch.distributed`` as ``torchrun`` sets it up.

One process per device (``LOCAL_RANK``), nccl on CUDA and gloo on CPU. The recipe's
``train.batch_size`` is the global batch; each rank trains on its own rows of it. Three
rules make N processes compute what one process computes on the whole batch:

- **Random draws are global.** Every per-sample random draw (augmentation parameters,
  group elements, pair positions, pretext labels) is made for the whole global batch,
  with the same generator state on every rank, and each rank keeps its own rows
  (:func:`global_count`, :func:`local_rows`). The random stream is thus the one
  process's, whatever the number of ranks.
- **Losses see the global batch.** Losses that compare samples (NT-Xent, VICReg's
  variance and covariance, the invariant contrastive loss) gather embeddings from every
  rank with gradients (:func:`gather_rows`), so each rank computes the global loss;
  per-sample means (BYOL, cross-entropy) need nothing. DDP averages the gradients.
- **Batch norm sees the global batch** (``train.sync_batchnorm``): every BatchNorm,
  escnn's included, becomes torch's ``SyncBatchNorm`` on CUDA. torch's has no CPU
  kernels, so on CPU (gloo) :class:`GlobalBatchNorm` does the same with one all-reduce of
  the per-channel sums.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from hssl_cli.errors import HsslUserError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World(rank=0, size=1, local_rank=0)


def world() -> World:
    """This process's place among the training processes (one process: rank 0 of 1)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes; return this rank's world and device.

    On CUDA each process takes the GPU ``LOCAL_RANK``; the backend is nccl there and gloo
    on CPU. Without torchrun's variables this is a single process and nothing happens.
    """
    if not launched_by_torchrun():
        return SINGLE, device
    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise HsslUserError(
                    f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are "
                    "visible; start at most one process per GPU (--nproc_per_node)"
                )
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world(), device


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(global_batch: int, size: int) -> int:
    if global_batch % size:
        raise HsslUserError(
            f"train.batch_size={global_batch} does not split evenly over {size} processes; "
            f"use a multiple of {size}"
        )
    return global_batch // size


def global_count(local_count: int) -> int:
    """How many per-sample draws to make so that every rank's rows come out of one stream."""
    return local_count * world().size


def local_rows(values: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global-batch draw (all of it in a single process)."""
    here = world()
    if here.size == 1:
        return values
    rows = values.shape[0] // here.size
    return values[here.rank * rows : (here.rank + 1) * rows]


def gather_rows(values: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, rank-major, with gradients flowing back to their owners."""
    if world().size == 1:
        return values
    with warnings.catch_warnings():  # deprecated in torch 2.14 for a private module
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(values.contiguous()))


def gather_sample_ids(sample_ids: torch.Tensor) -> torch.Tensor:
    """Gather per-view sample ids, made unique across ranks (ids are below ``len(ids)``)."""
    here = world()
    if here.size == 1:
        return sample_ids
    parts = [torch.empty_like(sample_ids) for _ in range(here.size)]
    dist.all_gather(parts, sample_ids.contiguous())
    return torch.cat([part + rank * len(sample_ids) for rank, part in enumerate(parts)])


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average named scalars over the ranks (one float64 all-reduce for all of them)."""
    if world().size == 1 or not values:
        return values
    names = sorted(values)
    stacked = torch.stack([values[name].detach().to(torch.float64) for name in names])
    dist.all_reduce(stacked)
    stacked /= world().size
    return dict(zip(names, stacked, strict=True))


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on some rank (every rank must call this at the same point)."""
    if world().size == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else None
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if world().size > 1:
        dist.barrier()


def _nccl() -> bool:
    return dist.get_backend() == "nccl"


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the samples of every rank, for CPU process groups (gloo).

    Per-channel sums and squared sums are all-reduced (with gradients) in float64, so the
    statistics, the running averages and the gradients are those of one batch norm over the
    global batch. In eval mode, or in a single process, it is an ordinary batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and world().size > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        reduce_dims = [0, *range(2, input.dim())]
        wide = input.double()
        count = torch.tensor(
            [input.numel() / input.shape[1]], dtype=torch.float64, device=input.device
        )
        local = torch.cat([wide.sum(reduce_dims), wide.square().sum(reduce_dims), count])
        with warnings.catch_warnings():  # see gather_rows
            warnings.simplefilter("ignore", FutureWarning)
            total = all_reduce(local)
        channels = input.shape[1]
        samples = total[-1]
        mean = total[:channels] / samples
        variance = total[channels : 2 * channels] / samples - mean.square()
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = variance * samples / (samples - 1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
                self.num_batches_tracked.add_(1)
        shape = (1, channels, *([1] * (input.dim() - 2)))
        # Statistics in float64, normalisation in the input's precision, as torch's CPU kernel.
        scale = (variance + self.eps).rsqrt().to(input.dtype)
        out = (input - mean.to(input.dtype).view(shape)) * scale.view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def synchronise_batch_norms(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` (escnn's inner ones included) over the global batch:
    torch's ``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` elsewhere. Converted in
    place, keeping the parameter and buffer objects (an optimiser or a moving-average twin
    built before still refers to them)."""
    kind = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm
    if _is_plain_batch_norm(module):
        return _converted(module, kind)
    for parent in module.modules():
        # Children are swapped in the module dict: escnn's SequentialModule checks field
        # types in add_module, which torch's convert_sync_batchnorm calls.
        for name, child in list(parent._modules.items()):
            if child is not None and _is_plain_batch_norm(child):
                parent._modules[name] = _converted(child, kind)
    return module


def _is_plain_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm | nn.SyncBatchNorm
    )


def _converted(module: nn.modules.batchnorm._BatchNorm, kind: type) -> nn.Module:
    converted = kind(
        module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
    )
    if module.affine:
        converted.weight, converted.bias = module.weight, module.bias
    converted.running_mean = module.running_mean
    converted.running_var = module.running_var
    converted.num_batches_tracked = module.num_batches_tracked
    converted.train(module.training)
    return converted
