"""Latency of one-item requests while batch clients keep the queue full: the issue 15 case of "a request
should not wait a full large batch behind one in flight".

Reward servers are shared: trainers send big batches while an evaluator, a judge or a rejection sampler sends
single items. A first-come queue makes each single item wait for every item queued before it; the service's
batcher plans each forward when the model thread reaches it, oldest item first and then the smallest
requests (`engine/planning.py`). Each engine gets the same load, one after the other: `clients` closed-loop
clients of `per_request` items each (the queue never empties), and single items open loop at `rate_per_s`.
The batch clients' items/s over the same window is kept beside the singles' p50/p99, so a scheduler that
bought the small requests' latency with the big ones' throughput would show it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from service.bench.loadgen import LoadResult, Target, load_until, open_loop
from service.bench.report import not_run

SINGLES_PER_S = 4.0
"""One-item requests per second beside the batches: a light evaluator next to the trainers."""
FILL_S = 2.0
"""Seconds the batch clients run before the singles start, so the queue is full when they arrive."""


async def singles_beside_batches(
    singles: tuple[Target, Sequence[Any]],
    batches: tuple[Target, Sequence[Any]],
    *,
    clients: int,
    per_request: int,
    rate_per_s: float,
    duration_s: float,
    seed: int,
) -> dict[str, Any]:
    """p50/p99 of single items sent open loop while `clients` batch clients run; their items/s meanwhile."""
    stop, batch_result = asyncio.Event(), LoadResult()
    background = asyncio.create_task(load_until(
        batches[0], batches[1], concurrency=clients, per_request=per_request, stop=stop, result=batch_result))
    await asyncio.sleep(FILL_S)
    scored_before, started = batch_result.items, time.perf_counter()
    single = await open_loop(singles[0], singles[1], rate_per_s=rate_per_s, duration_s=duration_s, seed=seed)
    window_s = time.perf_counter() - started
    batch_items = batch_result.items - scored_before
    ran_out = background.done()  # the batch units were exhausted before the singles were done
    stop.set()
    await background
    summary = single.summary()
    return {
        "singles_per_s": rate_per_s,
        "batch_clients": f"{clients}x{per_request}",
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "requests": summary["requests"],
        "errors": summary["errors"] + batch_result.errors,
        **({"first_error": single.first_error or batch_result.first_error}
           if single.errors or batch_result.errors else {}),
        "batch_items_per_s": round(batch_items / window_s, 2),
        **({"status": "batch clients ran out of items before the singles ended"} if ran_out else {}),
    }  # fmt: skip


def beside_batches_section(
    engines: dict[str, tuple[Target, Callable[[int], list[Any]]] | str],
    batch_items_per_s: dict[str, float],
    *,
    clients: int,
    per_request: int,
    duration_s: float,
    seed: int,
    settle: Callable[[], object],
) -> dict[str, Any]:
    """Each engine in turn (after `settle`): `engines[name]` is its target and a function giving n fresh work
    units in its shape, or the reason it did not run; `batch_items_per_s[name]` sizes the batch units."""
    section: dict[str, Any] = {}
    for name, engine in engines.items():
        if isinstance(engine, str):
            section[name] = not_run(engine)
            continue
        target, fresh = engine
        needed = int(batch_items_per_s.get(name, 0) * (FILL_S + duration_s) * 2) + clients * per_request * 2
        settle()
        section[name] = asyncio.run(singles_beside_batches(
            (target, fresh(int(SINGLES_PER_S * duration_s * 2) + 8)), (target, fresh(needed)),
            clients=clients, per_request=per_request, rate_per_s=SINGLES_PER_S, duration_s=duration_s,
            seed=seed))  # fmt: skip
    return section
