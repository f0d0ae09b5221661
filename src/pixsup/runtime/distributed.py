"""Training with several processes (ranks), one per device, under ``torch.distributed``.

:func:`process_group` sets the group up from the environment a launcher leaves:

- torchrun (``python -m pixsup.runtime.launch`` off SLURM): ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
- srun (``python -m pixsup.runtime.launch`` in a SLURM allocation): ``SLURM_PROCID``,
  ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``), ``SLURM_LOCALID``; the master is
  127.0.0.1 on one node, else the first host of the step's node list (or
  ``SLURM_LAUNCH_NODE_IPADDR``), and the port comes from the job and step ids
  (:func:`slurm_master_port`). Only a task of an srun step counts (``SLURM_STEP_ID``
  set): a batch script also carries ``SLURM_PROCID`` and ``SLURM_NTASKS`` but is one process.

With neither, or a world of one, nothing is initialised and training is exactly
what it is in one process. Backend: gloo on the CPU, nccl on CUDA, where each
rank takes ``cuda:LOCAL_RANK``.

:class:`Ranks` is what training code asks of the group: which rank it is, sums
over ranks of what a loss needs from the whole (global) batch, and the model
wrapped for DistributedDataParallel with BatchNorm statistics of the global batch.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import BatchSampler, Sampler

from ..config import ConfigError
from .launch_env import LaunchEnv, launch_env


class RankSliceSampler(Sampler[list[int]]):
    """Rank ``r``'s contiguous slice of every global batch of ``batches``.

    All ranks draw the same global batches (the same sampler and seed), so at
    every iteration the union of the ranks' batches is the batch one process
    would train on, in the same order.
    """

    def __init__(self, batches: BatchSampler, ranks: Ranks) -> None:
        self.batches = batches
        self.per_rank = ranks.per_rank_batch(batches.batch_size, "batch_size")
        self.start = ranks.rank * self.per_rank

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield batch[self.start : self.start + self.per_rank]

    def __len__(self) -> int:
        return len(self.batches)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the sum over ranks of the gradients of its output."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d normalising with the mean and variance of the global batch, summed over the
    ranks with gradients; torch's SyncBatchNorm does the same on GPUs only.

    Statistics are accumulated in float64 from per-channel sums, so they match one process's to
    about 1e-7; the running statistics follow the same update as BatchNorm2d's.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        sums = torch.cat([x.double().sum(dims), (x.double() ** 2).sum(dims)])
        sums = _SumOverRanks.apply(sums)
        count = x.numel() // channels * dist.get_world_size()
        mean = sums[:channels] / count
        var = sums[channels:] / count - mean * mean
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * count / max(count - 1, 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every BatchNorm2d replaced by one of these sharing its parameters and buffers."""
        if type(module) is nn.BatchNorm2d:
            synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                synced.weight, synced.bias = module.weight, module.bias
            if module.track_running_stats:
                synced.running_mean, synced.running_var = module.running_mean, module.running_var
                synced.num_batches_tracked = module.num_batches_tracked
            return synced.train(module.training)
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


@dataclass(frozen=True)
class Ranks:
    """The processes training one model, seen from one of them; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0

    def per_rank_batch(self, global_batch: int, key: str) -> int:
        """Each rank's share of the global batch ``key``; a ConfigError when it does not divide."""
        if global_batch % self.world_size:
            raise ConfigError(
                f"{key} {global_batch} is the global batch and must divide among {self.world_size} processes "
                f"(each takes {key} / processes): use a multiple of {self.world_size}"
            )
        return global_batch // self.world_size

    def sum(self, tensor: Tensor) -> Tensor:
        """Sum over ranks of a tensor that needs no gradient (a count, a prototype sum)."""
        if self.world_size == 1:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    def share_of_mean(self, local_total: Tensor, global_count: Tensor) -> Tensor:
        """This rank's share of the global batch mean ``sum over ranks of local_total / global_count``.

        DistributedDataParallel averages gradients over ranks, so each rank
        returns ``world_size`` shares: their average is the global mean, whose
        gradient is then that of one process on the whole batch.
        """
        return local_total * self.world_size / global_count

    def mean_over_ranks(self, values: dict[str, Tensor]) -> dict[str, float]:
        """Scalars averaged over ranks (each rank's shares average to the global value), for logging."""
        if self.world_size == 1:
            return {key: value.item() for key, value in values.items()}
        stacked = torch.stack([value.detach().float() for value in values.values()])
        dist.all_reduce(stacked)
        return dict(zip(values, (stacked / self.world_size).tolist()))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def wrap(self, model: nn.Module, unused_parameters: bool = False) -> nn.Module:
        """``model`` for training on every rank: BatchNorm over the global batch and gradients averaged
        by DistributedDataParallel. Parameters stay the same objects, so optimisers built on ``model``
        keep working; save and update ``model`` itself, not the wrapper. ``unused_parameters``: some
        trainable parameters may get no gradient in an iteration (DDP then looks for them)."""
        if self.world_size == 1:
            return model
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = GlobalBatchNorm2d.convert(model)
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=unused_parameters,
        )

    def check_identical(self, module: nn.Module, what: str) -> None:
        """Raise when ``module``'s weights differ between ranks (a cheap per-tensor checksum)."""
        if self.world_size == 1:
            return
        state = module.state_dict()
        checksum = torch.stack([t.detach().double().sum() for t in state.values()]).to(self.device)
        gathered = [torch.empty_like(checksum) for _ in range(self.world_size)]
        dist.all_gather(gathered, checksum)
        for rank, other in enumerate(gathered[1:], start=1):
            if not torch.equal(other, gathered[0]):
                key = list(state)[int((other != gathered[0]).nonzero()[0])]
                raise RuntimeError(f"{what} differs between rank 0 and rank {rank} (first at {key})")


@functools.cache
def _launcher_store(launched: LaunchEnv) -> dist.Store:
    # torch's rendezvous joins the store torchrun's agent serves on MASTER_PORT, or has rank 0 serve one.
    store, _, _ = next(
        dist.rendezvous(f"tcp://{launched.master_addr}:{launched.master_port}", launched.rank, launched.world_size)
    )
    return store


_groups_created = itertools.count()


def _fresh_store(launched: LaunchEnv) -> dist.Store:
    """The launcher's store under a prefix of its own for each group this process creates: the keys a
    destroyed group left there would mislead the next one (every rank creates its groups in the same
    order, so their prefixes agree)."""
    return dist.PrefixStore(f"pixsup/{next(_groups_created)}/", _launcher_store(launched))


def _rank_device(device: torch.device, local_rank: int, world_size: int) -> torch.device:
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ValueError(
            f"device {device} names one GPU for all {world_size} processes: use cuda or auto "
            "(each process takes cuda:LOCAL_RANK)"
        )
    count = torch.cuda.device_count()
    # srun may bind one GPU to each task: then the task's only visible device is its own.
    index = 0 if count == 1 else local_rank
    if index >= count:
        raise ValueError(
            f"process of local rank {local_rank} finds only {count} GPUs: launch at most {count} processes per node"
        )
    return torch.device("cuda", index)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Ranks]:
    """The ranks this process trains with: the group is created from the launcher's environment and
    destroyed on leaving, errors included."""
    launched = launch_env()
    if launched is None or launched.world_size == 1:
        yield Ranks(device=device)
        return
    rank_device = _rank_device(device, launched.local_rank, launched.world_size)
    if rank_device.type == "cuda":
        torch.cuda.set_device(rank_device)
    dist.init_process_group(
        "nccl" if rank_device.type == "cuda" else "gloo",
        store=_fresh_store(launched),
        rank=launched.rank,
        world_size=launched.world_size,
    )
    try:
        yield Ranks(launched.rank, launched.world_size, rank_device)
    finally:
        dist.destroy_process_group()
