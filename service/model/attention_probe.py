"""Which attention kernel the packed forward uses, decided by measuring both on this machine.

The faster kernel depends on the CPU, not on its vendor: on an AMD EPYC with AVX512-BF16 the
materialised-score kernel (two batched matmuls and a softmax) beat PyTorch's CPU flash attention 10 vs
19 ms per layer (8 x 336 tokens, bf16), while on an Intel Xeon with AMX-BF16 SDPA won (80 vs 72 items/s
for the whole backend; `../shared/reference/cpu-profile-amx.md`), and vLLM's CPU kernel (`paged`, where the
vLLM CPU build is installed) beat both there. So `choose_kernel` times every kernel that can run here
(`attention_plans.kernels_here`) on two kinds of traffic with the same number of tokens, shaped like chat
(three causal 384-token sequences) and like GRPO (a 384-token prompt attended once by 8 responses of 96
tokens each), in the model's heads, head_dim and dtype, and returns the kernel with the least time for
both, once per (device, dtype, heads, kv heads, head_dim) per process. The GRPO shape counts because the
kernels rank differently there: on a 2-core AMD EPYC with AVX2 (fp32) the bucket kernels attend a shared
prompt once for all its responses (`shared_prefix`) and beat vLLM's paged kernel by 4-11 % on GRPO
batches, while the two are within a few per cent on chat. Accelerators skip the probe: the fused masked SDPA
avoids the score tensor there.

The probe costs ~40-180 ms on 2 CPU cores; the kernels alternate and each keeps its best time, so a
burst of load from another process hurts all alike.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import torch

from .attention_plans import AttentionShape, kernels_here, plan_forward, run_attention
from .packed_attention import AttentionSequence

__all__ = ["choose_kernel", "probe_times"]

logger = logging.getLogger(__name__)

_PROBE_SEQUENCES = 3
_PROBE_TOKENS = 384
_PROBE_RESPONSES = 8
_PROBE_RESPONSE_TOKENS = 96  # 384 + 8 x 96 tokens: as many as the chat shape's 3 x 384
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


def _chat_sequences() -> list[AttentionSequence]:
    sequences, rows = [], 0
    for _ in range(_PROBE_SEQUENCES):
        span, positions = list(range(rows, rows + _PROBE_TOKENS)), list(range(_PROBE_TOKENS))
        sequences.append(AttentionSequence(span, positions, span, positions))
        rows += _PROBE_TOKENS
    return sequences


def _grpo_sequences() -> list[AttentionSequence]:
    prompt = list(range(_PROBE_TOKENS))
    sequences = [AttentionSequence(prompt, prompt, prompt, prompt)]
    positions = list(range(_PROBE_TOKENS, _PROBE_TOKENS + _PROBE_RESPONSE_TOKENS))
    for index in range(_PROBE_RESPONSES):
        start = _PROBE_TOKENS + index * _PROBE_RESPONSE_TOKENS
        rows = list(range(start, start + _PROBE_RESPONSE_TOKENS))
        sequences.append(AttentionSequence(rows, positions, prompt + rows, prompt + positions, _PROBE_TOKENS))
    return sequences


@torch.inference_mode()
def probe_times(
    device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int
) -> dict[str, float]:
    """Best seconds per call of each kernel, summed over the chat and GRPO probes (module docstring)."""
    shape = AttentionShape(heads, kv_heads, head_dim)
    rows = _PROBE_SEQUENCES * _PROBE_TOKENS
    generator = torch.Generator(device="cpu").manual_seed(0)
    query = torch.randn(rows, heads, head_dim, generator=generator).to(device, dtype)
    keys = torch.randn(rows, kv_heads, head_dim, generator=generator).to(device, dtype)
    values = torch.randn(rows, kv_heads, head_dim, generator=generator).to(device, dtype)
    plans: dict[str, list[Any]] = {}
    for kernel in kernels_here(device, head_dim=head_dim, dtype=dtype):
        try:  # planning and one call also warm the kernel up
            plans[kernel] = [
                plan_forward(sequences, sequences, kernel=kernel, shape=shape, dtype=dtype, device=device)[0]
                for sequences in (_chat_sequences(), _grpo_sequences())
            ]
            for plan in plans[kernel]:
                run_attention(query, keys, values, plan, head_dim**-0.5)
        except (RuntimeError, ValueError) as error:  # a kernel library that loads but refuses this shape
            plans.pop(kernel, None)
            logger.warning("attention kernel %s left out: it failed on the probe (%s)", kernel, error)
    kernels = list(plans)
    best = {kernel: [float("inf")] * 2 for kernel in kernels}
    for round_ in range(_ROUNDS):
        for kernel in kernels if round_ % 2 == 0 else reversed(kernels):
            for index, plan in enumerate(plans[kernel]):
                started = time.perf_counter()
                run_attention(query, keys, values, plan, head_dim**-0.5)
                best[kernel][index] = min(best[kernel][index], time.perf_counter() - started)
    return {kernel: sum(times) for kernel, times in best.items()}
