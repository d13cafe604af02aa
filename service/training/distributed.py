"""Data parallel over ``torchrun``: each rank rolls out its share of the prompts, DDP all-reduces gradients.

Launched plainly (``paretorm train ...``) everything here is a no-op. Under ``torchrun --nproc-per-node N
$(which paretorm) train ...`` the process group comes up from torchrun's environment (``gloo`` on CPU,
``nccl`` on CUDA), each rank takes every N-th prompt of the global batch (groups stay whole on one rank, so
group normalisation needs no communication), `torch.nn.parallel.DistributedDataParallel` averages the
gradients, and rank 0 alone writes metrics and checkpoints. Step metrics are averaged over ranks. With
``--fsdp`` the same ranks shard the policy instead of replicating it (`service.training.fsdp`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    fsdp: bool = False
    """Shard the policy (FSDP2) instead of replicating it (DDP)."""
    device_type: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, items: list) -> list:
        """This rank's share of a global batch (every ``size``-th item, from ``rank``)."""
        return items[self.rank :: self.size]

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module the optimiser trains: DDP around it, or (``--fsdp``) the module itself, sharded in place."""
        if not self.active:
            return module
        if self.fsdp:
            from service.training.fsdp import shard

            return shard(module, self.device_type, self.size)
        device_ids = [self.local_rank] if next(module.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    def wrap_frozen(self, module: nn.Module) -> nn.Module:
        """A no-grad model (the reference): sharded like the policy under ``--fsdp``, else left whole."""
        return self.wrap(module) if self.active and self.fsdp else module

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over the ranks that report each one.

        Ranks may report different keys (a CGPO rank that drew no prompt of a task logs nothing for it), so
        the union of the keys is gathered first and each key is averaged over the ranks that have it.
        """
        if not self.active:
            return values
        keys = sorted(set().union(*self.gather(sorted(values))))
        sums = torch.tensor([[float(values.get(k, 0.0)), float(k in values)] for k in keys], dtype=torch.float64)
        dist.all_reduce(sums)
        return {k: float(total) / count for k, (total, count) in zip(keys, sums.tolist(), strict=True) if count}

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), in rank order (one element when not distributed)."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.active:
            return flag
        tensor = torch.tensor([float(flag)])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Average ``parameters``' gradients over ranks by hand; a rank without a gradient counts zeros.

        For trainers whose ranks make different numbers of forwards and backwards in a step (CGPO: each
        task's loss needs its own forward, and a rank may draw no prompt of a task). DDP cannot serve them:
        its reducer all-reduces at each synced backward and re-broadcasts buffers at forwards, collectives
        every rank must make equally often. Such trainers train the bare module and call this once per step.
        """
        if not self.active:
            return
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(self.size)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_world(device: str, fsdp: bool = False) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local, fsdp=fsdp,
                 device_type="cuda" if device.startswith("cuda") else "cpu")  # fmt: skip


def close_world(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(module: nn.Module) -> str:
    """sha256 of every parameter's bytes, in name order: equal on every rank after a DDP step.

    Under FSDP each rank hashes the whole weights it gathers (a collective: call it on every rank), which
    is what its rollout engine is sent.
    """
    from service.training.fsdp import whole

    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        h.update(name.encode())
        h.update(whole(state[name]).detach().cpu().contiguous().numpy().tobytes())  # one whole tensor at a time
    return h.hexdigest()
