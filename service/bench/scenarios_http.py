"""Scenarios over HTTP: closed-loop throughput at fixed concurrency, and open-loop latency at fractions
of a measured maximum throughput. Each returns a JSON-ready dict; the runner decides which targets run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from service.bench.loadgen import Target, closed_loop, open_loop


def throughput(
    target: Target, units: Sequence[Any], *, concurrency: int, per_request: int, warmup: Sequence[Any] = ()
) -> dict[str, Any]:
    """Items/s with `concurrency` clients sending `per_request` units each (`warmup` units first, untimed)."""
    result = asyncio.run(
        closed_loop(target, units, concurrency=concurrency, per_request=per_request, warmup=warmup)
    )
    return {
        "target": target.name,
        "concurrency": concurrency,
        "items_per_request": per_request,
        **result.summary(),
    }


def latency_points(
    target: Target,
    units: Sequence[Any],
    *,
    max_items_per_s: float,
    fractions: Sequence[float],
    duration_s: float,
    seed: int,
) -> list[dict[str, Any]]:
    """p50/p99 of single-item requests sent open-loop at `fraction x max_items_per_s`."""
    points = []
    for k, fraction in enumerate(fractions):
        rate = max(0.5, fraction * max_items_per_s)
        result = asyncio.run(open_loop(target, units, rate_per_s=rate, duration_s=duration_s, seed=seed + k))
        summary = result.summary()
        points.append(
            {
                "load": fraction,
                "offered_items_per_s": round(rate, 2),
                "achieved_items_per_s": summary["items_per_s"],
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "requests": summary["requests"],
                "errors": summary["errors"],
                **({"first_error": summary["first_error"]} if "first_error" in summary else {}),
            }
        )
    return points
