"""torch.distributed set-up for ``torchrun``: gloo on CPU, NCCL on GPU; rank 0 writes files."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .data import Shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world_size)

    def all_sum(self, *values: float) -> list[float]:
        """Sum numbers over all processes (identity in a single process)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Sum the parameters' gradients over all processes (for loops that run without DDP)."""
        if not self.enabled:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the global batch: every process's part of it.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this one reduces the per-channel sums through
    the differentiable ``torch.distributed.nn.functional.all_reduce``, so it works with gloo on
    CPUs too, and a multi-process run computes what a single process would with the same global
    batch. In eval mode, or in a single process, it is plain BatchNorm.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        x = x.float()  # statistics in fp32 also under autocast, as BatchNorm's own kernels do
        shape, dims = (1, -1, 1, 1), (0, 2, 3)
        count = torch.full((x.shape[1],), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        total, n = differentiable_all_reduce(torch.stack([x.sum(dims), count])).unbind(0)
        mean = total / n
        # the centred second moment, summed over processes: no cancellation as in E[x^2] - E[x]^2
        var = differentiable_all_reduce((x - mean.view(shape)).square().sum(dims)) / n
        self._track(mean.detach(), var.detach(), n.detach())
        x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape) if self.affine else x_hat

    @torch.no_grad()
    def _track(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        if not self.track_running_stats or self.running_mean is None:
            return
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * n / (n - 1).clamp_min(1.0)
        self.running_mean.mul_(1 - momentum).add_(momentum * mean)
        self.running_var.mul_(1 - momentum).add_(momentum * unbiased)


def differentiable_all_reduce(tensor: Tensor) -> Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


def _swap_batchnorm(model: nn.Module, to: type[nn.BatchNorm2d], source: type[nn.BatchNorm2d]) -> nn.Module:
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and type(module) not in (source, to):
            log.warning(f"{name} ({type(module).__name__}) keeps per-process batch statistics")
        if type(module) is source:
            reference = next(iter([*module.parameters(), *module.buffers()]))
            replacement = to(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                device=reference.device, dtype=reference.dtype if reference.is_floating_point() else None,
            )  # fmt: skip
            replacement.load_state_dict(module.state_dict())
            replacement.train(module.training)
            for new, old in zip(replacement.parameters(), module.parameters(), strict=True):
                new.requires_grad_(old.requires_grad)  # a frozen extractor (slf, alf) stays frozen
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, replacement)
    return model


def use_global_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` for ``GlobalBatchNorm2d`` (same parameters, buffers and keys), in place."""
    return _swap_batchnorm(model, GlobalBatchNorm2d, nn.BatchNorm2d)


def restore_batchnorm(model: nn.Module) -> nn.Module:
    """Swap ``GlobalBatchNorm2d`` back for plain ``nn.BatchNorm2d``, in place (for export)."""
    return _swap_batchnorm(model, nn.BatchNorm2d, GlobalBatchNorm2d)
