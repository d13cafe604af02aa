"""`paretorm bench-engine --levers`: backend configurations side by side on the same fresh batches.

On a shared or noisy machine absolute items/s drift by tens of percent between runs, so levers are only
comparable inside one run: every configuration scores the *same* never-seen batches, one batch at a time
in a rotating order (a burst of load hits each configuration alike), and the report gives each one's
items/s and its median per-batch speed ratio to the first configuration (the baseline).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LEVERS", "compare_levers"]

# name -> TransformersBackend keyword arguments; the first is the baseline (the forward as landed before
# issue 15: materialised-score attention, no row rounding).
LEVERS: dict[str, dict[str, Any]] = {
    "packed matmul": {"attention_kernel": "matmul", "row_multiple": 1},
    "packed matmul + rows64": {"attention_kernel": "matmul", "row_multiple": 64},
    "packed sdpa": {"attention_kernel": "sdpa", "row_multiple": 1},
    "packed sdpa + rows64": {"attention_kernel": "sdpa", "row_multiple": 64},
    "packed default (probe + rows64)": {},
    "packed matmul + compile": {"attention_kernel": "matmul", "row_multiple": 1, "compile_layers": True},
    "packed matmul + rows64 + compile": {"attention_kernel": "matmul", "compile_layers": True},
    "packed sdpa + compile": {"attention_kernel": "sdpa", "row_multiple": 1, "compile_layers": True},
    "packed sdpa + rows64 + compile": {"attention_kernel": "sdpa", "compile_layers": True},
    "packed paged + rows64": {"attention_kernel": "paged"},  # where vLLM's CPU build is installed
    "packed paged + rows64 + compile": {"attention_kernel": "paged", "compile_layers": True},
    "padded (transformers)": {"packed": False},
}


def compare_levers(
    model: Any, batches: Sequence[Sequence[Any]], warm: Sequence[Sequence[Any]], device: str,
    levers: dict[str, dict[str, Any]] | None = None, say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Items/s and median speed ratio to the first lever, over `batches` (after `warm`, untimed); levers
    whose attention kernel cannot run here are left out."""
    import torch

    from service.engine.transformers_backend import TransformersBackend
    from service.model.attention_plans import kernels_here

    runnable = kernels_here(torch.device(device))
    levers = {
        name: options for name, options in (levers or LEVERS).items()
        if options.get("attention_kernel", "matmul") in runnable
    }  # fmt: skip
    backends = {name: TransformersBackend(model, device=device, **options) for name, options in levers.items()}
    for batch in warm:
        for backend in backends.values():
            backend.run(batch)
    names = list(backends)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index, batch in enumerate(batches):
        order = names[index % len(names):] + names[: index % len(names)]
        for name in order:
            started = time.perf_counter()
            backends[name].run(batch)
            seconds[name].append(time.perf_counter() - started)
        say(f"levers: batch {index + 1}/{len(batches)}")
    items = sum(len(batch) for batch in batches)
    base = seconds[names[0]]
    return {
        name: {
            "items_per_s": round(items / sum(times), 2),
            "median_speedup_vs_first": round(statistics.median(b / t for b, t in zip(base, times, strict=True)), 3),
            "attention_kernel": getattr(backends[name]._decoder, "_attention_kernel", None),
        }
        for name, times in seconds.items()
    }
