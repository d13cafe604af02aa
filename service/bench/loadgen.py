"""HTTP load generators: closed-loop clients at a fixed concurrency, and an open-loop Poisson stream.

Closed loop (throughput): `concurrency` clients each send a request, wait for the answer, send the next,
until the work list is empty — how RL workers drive a reward server. Open loop (latency under load):
requests leave at Poisson times at a fixed rate whatever the server does, and latency is measured from
the *scheduled* send time, so a server that falls behind shows it (no coordinated omission).

Every answer is checked (`Target.validate`): a run that gets errors or answers missing what was asked
reports them instead of a flattering number. A target is plain data — the path, how to build a body
from work units, and how to check the answer — so one generator drives the service, vLLM and the floor.
Requests go through `rawload.RawClient` (keep-alive HTTP/1.1 over asyncio streams), not httpx: the client
runs on the cores the servers use, and httpx's CPU per request was taken from whichever server was measured.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.bench.rawload import RawClient


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    path: str
    body: Callable[[Sequence[Any]], dict[str, Any]]  # work units -> JSON body
    count: Callable[[Sequence[Any]], int]  # work units -> items scored
    validate: Callable[[dict[str, Any], int], None]  # raises ValueError when the answer lacks something


@dataclass
class LoadResult:
    items: int = 0
    requests: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        latencies = np.asarray(self.latencies_s) * 1000 if self.latencies_s else np.zeros(1)
        out: dict[str, Any] = {
            "items_per_s": round(self.items_per_s, 2),
            "items": self.items,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "errors": self.errors,
        }
        if self.first_error:
            out["first_error"] = self.first_error
        return out


def _chunks(units: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [units[i : i + size] for i in range(0, len(units), size)]


async def _send(client: RawClient, target: Target, chunk: Sequence[Any], result: LoadResult) -> bool:
    try:
        status, answer = await client.post_json(target.path, json.dumps(target.body(chunk)).encode())
        if status != 200:
            raise ValueError(f"HTTP {status}: {answer[:300].decode(errors='replace')}")
        target.validate(json.loads(answer), target.count(chunk))
        return True
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, KeyError,
            TypeError) as error:  # fmt: skip
        result.errors += 1
        result.first_error = result.first_error or f"{type(error).__name__}: {error}"
        return False


async def closed_loop(
    target: Target,
    units: Sequence[Any],
    *,
    concurrency: int,
    per_request: int,
    warmup: Sequence[Any] = (),
    timeout_s: float = 300.0,
) -> LoadResult:
    """Score `units` with `concurrency` clients sending `per_request` units per request.

    `warmup` units (distinct from `units`, so no cache sees a timed item twice) are sent first, untimed,
    in the same request shape: connections open and the server's first batches run before the clock starts.
    """
    requests = _chunks(units, per_request)
    result = LoadResult()
    with RawClient(target.base_url, timeout_s) as client:
        if warmup:
            warm = LoadResult()
            warm_chunks = _chunks(warmup, per_request)[:concurrency]
            await asyncio.gather(*(_send(client, target, chunk, warm) for chunk in warm_chunks))
            if warm.errors:
                result.errors, result.first_error = warm.errors, warm.first_error
                return result
        queue = iter(requests)

        async def worker() -> None:
            for chunk in queue:  # one shared iterator: each request is taken by exactly one worker
                sent = time.perf_counter()
                if await _send(client, target, chunk, result):
                    result.latencies_s.append(time.perf_counter() - sent)
                    result.items += target.count(chunk)
                    result.requests += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


async def open_loop(
    target: Target,
    units: Sequence[Any],
    *,
    rate_per_s: float,
    duration_s: float,
    seed: int,
    timeout_s: float = 300.0,
) -> LoadResult:
    """One unit per request at Poisson arrival times (rate `rate_per_s`) for `duration_s` seconds."""
    rng = random.Random(seed)
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t > duration_s:
            break
        times.append(t)
    result = LoadResult()
    with RawClient(target.base_url, timeout_s) as client:
        started = time.perf_counter()

        async def one(index: int, at: float) -> None:
            delay = started + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = [units[index % len(units)]]
            if await _send(client, target, chunk, result):
                result.latencies_s.append(time.perf_counter() - (started + at))
                result.items += 1
                result.requests += 1

        await asyncio.gather(*(one(i, at) for i, at in enumerate(times)))
        result.seconds = time.perf_counter() - started
    return result


async def load_until(
    target: Target,
    units: Sequence[Any],
    *,
    concurrency: int,
    per_request: int,
    stop: asyncio.Event,
    result: LoadResult,
    timeout_s: float = 300.0,
) -> None:
    """`concurrency` closed-loop clients sending `per_request` units each until `stop` is set or the units
    run out (never repeated: a cache would answer them); what they scored is counted into `result` as it
    lands, so a caller can read the rate over a window of its own while this runs beside it."""
    requests = iter(_chunks(units, per_request))
    with RawClient(target.base_url, timeout_s) as client:

        async def worker() -> None:
            for chunk in requests:  # one shared iterator: each request is taken by exactly one worker
                if stop.is_set():
                    return
                if await _send(client, target, chunk, result):
                    result.items += target.count(chunk)
                    result.requests += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
