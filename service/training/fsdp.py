"""FSDP2 (torch's own ``fully_shard``) for policies that do not fit one device: shard, and gather back.

``--fsdp`` under ``torchrun`` shards instead of replicating: each decoder layer (the classes a HF model
names in ``_no_split_modules``) becomes one FSDP unit, then the root takes what is left (embeddings, final
norm, LM head). Parameters become DTensors split on dim 0 over the ranks; a forward all-gathers one unit at
a time and frees it afterwards, backward reduce-scatters the gradients averaged over ranks (the same mean
DDP's all-reduce takes), and AdamW keeps only its rank's shard of the moments. Why FSDP2 and not FSDP1:
it is the one torch develops (TRL, veRL and torchtitan moved to it), its parameters stay plain
``nn.Parameter`` DTensors under their HF names, and it runs on CPU over gloo, which is how it is tested.

Everything that reads whole weights gathers them:
- the weight push to each rank's rollout engine and the weight digests stream the model one tensor at a
  time (`full_state`: ``DTensor.full_tensor()``, a collective every rank calls in the same name order), so
  at most one gathered tensor lives beside the shards;
- checkpoints and ``final/`` take torch.distributed.checkpoint's full state dicts with ``cpu_offload``:
  rank 0 gets whole CPU tensors, the other ranks nothing. A checkpoint keeps the DDP layout (a HF
  directory + ``trainer.pt``), with the optimiser state keyed by parameter name, which `--resume` reads on
  every rank and cuts back to each rank's shard (`load_full_optimizer_state`).

FSDP gathers inside every forward, so every rank must run the same number of them: the prompts split
evenly (``--prompts-per-step`` a multiple of the ranks, checked in config), and a ``transformers.generate``
rollout (whose length depends on what each rank samples) runs on its own unsharded copy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

_FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


@functools.cache
def _mesh(device_type: str, size: int) -> DeviceMesh:
    """One 1-D mesh over every rank, shared by the policy and the reference (one set of groups)."""
    return init_device_mesh(device_type, (size,))


def shard(module: nn.Module, device_type: str, size: int) -> nn.Module:
    """``fully_shard`` each decoder layer, then the root; in place (the same object comes back).

    Parameters still on CPU are moved to the mesh's device layer by layer, so a CUDA run can load the
    whole policy into host memory and never hold it whole on one GPU.
    """
    mesh = _mesh(device_type, size)
    layer_names = {name for m in module.modules() for name in getattr(m, "_no_split_modules", None) or ()}
    layers = [m for m in module.modules() if type(m).__name__ in layer_names]
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def local_parameters(module: nn.Module) -> int:
    """How many parameter values this rank holds (its shards under FSDP; every value otherwise)."""
    return sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in module.parameters())


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The full tensor behind a DTensor (a collective), or the tensor itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@torch.no_grad()
def full_state(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``state_dict`` items with every shard gathered, one tensor at a time (call it on every rank)."""
    for name, tensor in module.state_dict().items():
        yield name, whole(tensor)


def full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The whole weights on rank 0's CPU (``{}`` on the other ranks); a collective."""
    return get_model_state_dict(module, options=_FULL_ON_RANK0)


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's whole state keyed by parameter name, on rank 0's CPU (``{}`` elsewhere)."""
    return get_optimizer_state_dict(module, optimizer, options=_FULL_ON_RANK0)


def load_full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Back from a `full_optimizer_state` every rank has read: each rank keeps its own shard of it."""
    set_optimizer_state_dict(module, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))  # fmt: skip
