"""Which attention kernel the packed forward uses, decided by measuring both on this machine.

The faster kernel depends on the CPU, not on its vendor: on an AMD EPYC with AVX512-BF16 the
materialised-score kernel (two batched matmuls and a softmax) beat PyTorch's CPU flash attention 10 vs
19 ms per layer (8 x 336 tokens, bf16), while on an Intel Xeon with AMX-BF16 SDPA won (80 vs 72 items/s
for the whole backend; `../shared/reference/cpu-profile-amx.md`), and vLLM's CPU kernel (`paged`, where the
vLLM CPU build is installed) beat both there. So `choose_kernel` times every kernel that can run here
(`attention_plans.kernels_here`) on sequences shaped like chat traffic (three causal 384-token sequences;
the model's heads, head_dim and dtype) and returns the fastest, once per (device, dtype, heads, kv heads,
head_dim) per process. Accelerators skip the probe: the fused masked SDPA avoids the score tensor there.

The probe costs ~20-90 ms on 2 CPU cores; the kernels alternate and each keeps its best time, so a
burst of load from another process hurts all alike.
"""

from __future__ import annotations

import functools
import logging
import time

import torch

from .attention_plans import AttentionShape, kernels_here, plan_forward, run_attention
from .packed_attention import AttentionSequence

__all__ = ["choose_kernel", "probe_times"]

logger = logging.getLogger(__name__)

_PROBE_SEQUENCES = 3
_PROBE_TOKENS = 384
_ROUNDS = 5


def choose_kernel(device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int) -> str:
    """`sdpa` on accelerators; on CPUs the fastest of `kernels_here` as measured here (cached per shape)."""
    if device.type != "cpu":
        return "sdpa"
    return _measured(str(device), dtype, heads, kv_heads, head_dim)


@functools.cache
def _measured(device: str, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int) -> str:
    times = probe_times(torch.device(device), dtype, heads, kv_heads, head_dim)
    best = min(times, key=times.__getitem__)
    logger.info("attention kernel %s (probe, ms per bucket: %s)", best,
                ", ".join(f"{k} {v * 1000:.2f}" for k, v in times.items()))  # fmt: skip
    return best


@torch.inference_mode()
def probe_times(
    device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int
) -> dict[str, float]:
    """Best seconds per call of each kernel on the probe buckets (see the module docstring)."""
    sequences, rows = [], 0
    for _ in range(_PROBE_SEQUENCES):
        span, positions = list(range(rows, rows + _PROBE_TOKENS)), list(range(_PROBE_TOKENS))
        sequences.append(AttentionSequence(span, positions, span, positions))
        rows += _PROBE_TOKENS
    shape = AttentionShape(heads, kv_heads, head_dim)
    generator = torch.Generator(device="cpu").manual_seed(0)
    query = torch.randn(rows, heads, head_dim, generator=generator).to(device, dtype)
    keys = torch.randn(rows, kv_heads, head_dim, generator=generator).to(device, dtype)
    values = torch.randn(rows, kv_heads, head_dim, generator=generator).to(device, dtype)
    plans = {}
    for kernel in kernels_here(device, head_dim=head_dim, dtype=dtype):
        try:  # planning and one call also warm the kernel up
            plans[kernel], _ = plan_forward(
                sequences, sequences, kernel=kernel, shape=shape, dtype=dtype, device=device
            )
            run_attention(query, keys, values, plans[kernel], head_dim**-0.5)
        except (RuntimeError, ValueError) as error:  # a kernel library that loads but refuses this shape
            plans.pop(kernel, None)
            logger.warning("attention kernel %s left out: it failed on the probe (%s)", kernel, error)
    kernels = list(plans)
    best = dict.fromkeys(kernels, float("inf"))
    for round_ in range(_ROUNDS):
        for kernel in kernels if round_ % 2 == 0 else reversed(kernels):
            started = time.perf_counter()
            run_attention(query, keys, values, plans[kernel], head_dim**-0.5)
            best[kernel] = min(best[kernel], time.perf_counter() - started)
    return best
