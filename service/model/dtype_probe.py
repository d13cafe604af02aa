"""Which backbone dtype is fast on this machine, measured: `--dtype auto`, and a warning for a slow bfloat16.

bfloat16 is 2-4x faster than float32 on some CPUs and slower on others, and the CPU flags do not say which.
Faster on an Intel Xeon with AMX-BF16 and on an AMD EPYC with AVX512-BF16. Slower on an Intel Xeon (family 6
model 207) with AVX512-BF16 but no AMX: torch 2.13 ran a bf16 linear layer of the bench model's shapes at
135-167 GFLOP/s (oneDNN's `avx512_core_bf16` kernel) against float32's 229-328 (2026-12-07). Many times
slower with AVX2 only (AMD EPYC, Zen 3): a bf16 linear layer at 17 GFLOP/s against float32's 110-154, and a
bf16 `@` at 1 GFLOP/s (2026-12-06). So the choice is measured, not read from a vendor or a flag list: one
linear layer in each dtype, alternating,
each keeping its best time (0.8 s on that EPYC, where every bfloat16 call is slow). Accelerators skip the
measurement: CUDA GPUs that support bfloat16 run it on tensor cores.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import torch

__all__ = ["BF16_MIN_SPEEDUP", "Measure", "bfloat16_speedup", "linear_seconds", "resolve_dtype"]

logger = logging.getLogger(__name__)

BF16_MIN_SPEEDUP = 1.25  # `auto` takes bfloat16 only where it is clearly faster: it costs exactness
_SLOW_BF16 = 1.5  # an explicit bfloat16 this much slower than float32 gets a warning
_ROWS, _FEATURES, _ROUNDS = 256, 1024, 3

Measure = Callable[[torch.device, torch.dtype], float]


@torch.inference_mode()
def linear_seconds(device: torch.device, dtype: torch.dtype) -> float:
    """Best seconds of one (256 x 1024) x (1024 x 1024) linear layer in `dtype`, after one warm call."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    inputs = torch.randn(_ROWS, _FEATURES, generator=generator).to(device, dtype)
    weight = torch.randn(_FEATURES, _FEATURES, generator=generator).to(device, dtype)
    torch.nn.functional.linear(inputs, weight)
    best = float("inf")
    for _ in range(_ROUNDS):
        started = time.perf_counter()
        torch.nn.functional.linear(inputs, weight)
        best = min(best, time.perf_counter() - started)
    return best


@functools.cache  # once per process: the service's `auto` and the default model's build share it
def bfloat16_speedup(device: torch.device, measure: Measure = linear_seconds) -> float:
    """float32 time / bfloat16 time of the same linear layer (> 1: bfloat16 is faster), alternating pairs."""
    float32 = bfloat16 = float("inf")
    for _ in range(2):  # a burst of load from another process then hurts both alike
        float32 = min(float32, measure(device, torch.float32))
        bfloat16 = min(bfloat16, measure(device, torch.bfloat16))
    return float32 / bfloat16


def resolve_dtype(requested: str, device: str, measure: Measure = linear_seconds) -> str:
    """The concrete dtype to load: `auto` measured on CPUs (bfloat16 where >= 1.25x faster), as asked
    otherwise; an explicit bfloat16 on a CPU where it is >= 1.5x slower than float32 gets a warning."""
    target = torch.device(device)
    if requested == "auto" and target.type != "cpu":
        return "bfloat16" if target.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if target.type != "cpu" or requested not in ("auto", "bfloat16"):
        return requested
    speedup = bfloat16_speedup(target, measure)
    if requested == "bfloat16":
        if speedup < 1 / _SLOW_BF16:
            logger.warning("bfloat16 runs %.1fx slower than float32 on this CPU (it has no native bfloat16 "
                           "multiply: no AVX512-BF16 or AMX); start with --dtype float32 or --dtype auto",
                           1 / speedup)  # fmt: skip
        return requested
    chosen = "bfloat16" if speedup >= BF16_MIN_SPEEDUP else "float32"
    logger.info("--dtype auto: %s (a bfloat16 linear layer ran %.2fx the speed of float32 here; bfloat16 is "
                "taken at >= %.2fx)", chosen, speedup, BF16_MIN_SPEEDUP)  # fmt: skip
    return chosen
