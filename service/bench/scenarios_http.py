"""Scenarios over HTTP: closed-loop throughput at fixed concurrency, and open-loop latency at fractions
of a measured maximum throughput (each engine's own, or one rate for all engines). Each returns a
JSON-ready dict; the runner decides which targets run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
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
    """p50/p99 of single-item requests sent open-loop at `fraction x max_items_per_s`; each point sends its
    own slice of `units` (`units_needed` long), so no point repeats another's items into a cache."""
    rates = point_rates(fractions, max_items_per_s)
    slices = _per_point(units, rates, duration_s)
    return [
        _point(target, part, fraction, rate, duration_s, seed + k)
        for k, (fraction, rate, part) in enumerate(zip(fractions, rates, slices, strict=True))
    ]


def point_rates(fractions: Sequence[float], base_items_per_s: float) -> list[float]:
    """The offered rate of each latency point: `fraction x base`, at least one request every 2 s."""
    return [max(0.5, fraction * base_items_per_s) for fraction in fractions]


def units_needed(rates: Sequence[float], duration_s: float) -> int:
    """Items enough for one open-loop point per rate without reusing any (Poisson counts run ~30 % over)."""
    return sum(_point_units(rate, duration_s) for rate in rates)


def _point_units(rate: float, duration_s: float) -> int:
    return int(math.ceil(rate * duration_s * 1.3)) + 8


def _per_point(units: Sequence[Any], rates: Sequence[float], duration_s: float) -> list[Sequence[Any]]:
    """Consecutive slices of `units`, one per rate. Too few units is reuse, not failure: a slice cut short
    cycles its own items (`open_loop` wraps), and one past the end takes `units` from the start."""
    slices, start = [], 0
    for rate in rates:
        count = _point_units(rate, duration_s)
        part = units[start : start + count]
        slices.append(part if len(part) else units)
        start += count
    return slices


def same_rate_points(
    engines: Mapping[str, tuple[Target, Sequence[Any]]],
    *,
    base_items_per_s: float,
    fractions: Sequence[float],
    duration_s: float,
    seed: int,
    settle: Callable[[], object] = lambda: None,
) -> dict[str, list[dict[str, Any]]]:
    """p50/p99 of every engine at the same offered rates, `fraction x base_items_per_s` (the slower engine's
    maximum): the like-for-like view beside `latency_points`, where each engine is loaded relative to its
    own maximum and the faster one is therefore measured at a higher rate. Engines alternate point by point
    (after `settle`) and see the same arrival times, so a drift of the host's speed hits them alike."""
    rates = point_rates(fractions, base_items_per_s)
    slices = {name: _per_point(units, rates, duration_s) for name, (_, units) in engines.items()}
    points: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for k, (fraction, rate) in enumerate(zip(fractions, rates, strict=True)):
        for name, (target, _) in engines.items():
            settle()
            points[name].append(_point(target, slices[name][k], fraction, rate, duration_s, seed + k))
    return points


def _point(target: Target, units: Sequence[Any], fraction: float, rate: float, duration_s: float,
           seed: int) -> dict[str, Any]:
    summary = asyncio.run(open_loop(target, units, rate_per_s=rate, duration_s=duration_s, seed=seed)).summary()
    return {
        "load": fraction,
        "offered_items_per_s": round(rate, 2),
        "achieved_items_per_s": summary["items_per_s"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "requests": summary["requests"],
        "errors": summary["errors"],
        **({"first_error": summary["first_error"]} if "first_error" in summary else {}),
    }
