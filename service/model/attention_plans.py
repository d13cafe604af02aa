"""One way to plan and run packed attention, whichever kernel the decoder uses.

- `matmul` and `sdpa` run length buckets (`packed_attention`): PyTorch ops on any device;
- `paged` runs vLLM's CPU attention kernel over a paged key cache (`paged_attention`), where the vLLM CPU
  build is installed.

The packing step plans a forward once for the decoder's kernel (the rows of every layer, and the readout
rows of the last); every layer then runs the same plan, and the plan says which kernel runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .packed_attention import AttentionSequence, BucketedAttention, attend, plan_attention
from .paged_attention import (
    PagedPlan,
    attend_paged,
    available,
    plan_paged_keys,
    plan_paged_requests,
    supports,
)

__all__ = ["AttentionPlan", "AttentionShape", "BucketPlan", "kernels_here", "plan_forward", "run_attention"]

BUCKET_KERNELS = ("matmul", "sdpa")


@dataclass(frozen=True, slots=True)
class AttentionShape:
    heads: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True, slots=True)
class BucketPlan:
    buckets: BucketedAttention
    kernel: str  # one of BUCKET_KERNELS


AttentionPlan = BucketPlan | PagedPlan


def kernels_here(
    device: torch.device, *, head_dim: int | None = None, dtype: torch.dtype | None = None
) -> tuple[str, ...]:
    """The kernels that can run on `device` in this environment (for this head size and dtype, if given)."""
    paged = device.type == "cpu" and available()
    if head_dim is not None and dtype is not None:
        paged = paged and supports(head_dim, dtype)
    return BUCKET_KERNELS + (("paged",) if paged else ())


def plan_forward(
    sequences: Sequence[AttentionSequence],
    readout_sequences: Sequence[AttentionSequence],
    *,
    kernel: str,
    shape: AttentionShape,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[AttentionPlan, AttentionPlan]:
    """Plans for the layers' rows and for the last layer's readout rows (the same keys, other queries)."""
    if kernel in BUCKET_KERNELS:
        return tuple(  # type: ignore[return-value]
            BucketPlan(plan_attention(part, num_heads=shape.heads, dtype=dtype, device=device), kernel)
            for part in (sequences, readout_sequences)
        )
    runnable = kernels_here(device, head_dim=shape.head_dim, dtype=dtype)
    if kernel not in runnable:
        raise ValueError(f"attention kernel {kernel!r} cannot run here ({dtype}, head_dim {shape.head_dim}); "
                         f"use one of {runnable}")  # fmt: skip
    keys = plan_paged_keys(sequences, kv_heads=shape.kv_heads, head_dim=shape.head_dim, dtype=dtype)
    return (
        plan_paged_requests(keys, sequences, num_heads=shape.heads),
        plan_paged_requests(keys, readout_sequences, num_heads=shape.heads),
    )


def run_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, plan: AttentionPlan, scaling: float
) -> torch.Tensor:
    """Softmax attention of `query` (Tq, Hq, D) over the key pool (Tk, Hkv, D) -> (Tq, Hq, D)."""
    if isinstance(plan, PagedPlan):
        return attend_paged(query, keys, values, plan, scaling)
    return attend(query, keys, values, plan.buckets, scaling, kernel=plan.kernel)
