"""Overload: a burst at 10x measured capacity, then slow clients that try to pin the service.

Capacity is measured first, in the same run and over HTTP (closed loop, the same requests), because the
shared 2-core machine's speed moves by 2x between runs. The burst is open loop (requests leave on a clock,
not when answers come back) for `PARETORM_RELIABILITY_BURST_S` seconds (default 30). Every request carries
a deadline; the service must answer each one (200, 429 with Retry-After, 503, or 504 at its deadline),
none past deadline + slack, keep admitting at least 80% of its unloaded throughput, stay under a memory
bound, and be back to unloaded latency shortly after the burst. The queue bound (`--max-queue-tokens`) is
what turns excess into fast 429s; it is set to well under a deadline's worth of work.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import API_KEY, Summary, SuiteRow, peak_rss_mb
from tests.reliability.traffic import item, open_fds, rss_mb
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.reliability

BURST_S = float(os.environ.get("PARETORM_RELIABILITY_BURST_S", "30"))
SLOW_S = float(os.environ.get("PARETORM_RELIABILITY_SLOW_S", "20"))
ITEMS = 32  # per request: the burst's request rate stays within what one Python client can send
DEADLINE_MS = 2000
SLACK_S = 1.0  # past the deadline, for the event loop on shared cores to send the 504
QUEUE_TOKENS = 16384  # ~440 tiny items, well under a second of work: excess is refused, not queued
RSS_BOUND_MB = 1024.0
RECOVERY_BOUND_S = 5.0
GOOD_BOUND_S = 2.0  # a good request's latency while slow clients hold connections
AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}  # bodies go pre-encoded


@dataclass(frozen=True, slots=True)
class Shot:
    status: int  # -1: no answer (an exception)
    elapsed_s: float
    finished_at: float
    retry_after: str | None


@pytest.fixture(scope="module")
def service(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("overload") / "serve.log"
    with ServiceProcess(tiny_armorm_dir, args=["--max-queue-tokens", str(QUEUE_TOKENS), "--log-level", "warning"],
                        env={"PARETORM_API_KEYS": API_KEY}, log_path=log) as process:
        yield process


def bodies(count: int, tag: str, size: int = ITEMS) -> list[bytes]:
    """Distinct pre-encoded /v1/score bodies, so the client spends its CPU on sending, not on JSON."""
    return [json.dumps({"items": [item(n * size + k, tag) for k in range(size)]}).encode() for n in range(count)]


async def capacity(url: str, seconds: float = 6.0, workers: int = 4) -> float:
    """Items per second, closed loop (each worker sends its next request when the last is answered)."""
    payloads = bodies(64, "cap")
    done = 0
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as client:
        async def worker(w: int) -> None:
            nonlocal done
            n = w
            while time.monotonic() < stop:
                answer = await client.post("/v1/score", content=payloads[n % len(payloads)])
                assert answer.status_code == 200, answer.text
                done += ITEMS
                n += workers
        stop = time.monotonic() + 1.0  # warm-up, not counted
        await asyncio.gather(*(worker(w) for w in range(workers)))
        done, started, stop = 0, time.monotonic(), time.monotonic() + seconds
        await asyncio.gather(*(worker(w) for w in range(workers)))
        return done / (time.monotonic() - started)


async def one_latency(client: httpx.AsyncClient, payload: bytes) -> float:
    started = time.monotonic()
    answer = await client.post("/v1/score", content=payload)
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started


async def shot(client: httpx.AsyncClient, payload: bytes) -> Shot:
    started = time.monotonic()
    try:
        answer = await client.post("/v1/score", content=payload, headers={"X-Request-Deadline-Ms": str(DEADLINE_MS)})
    except httpx.HTTPError:
        return Shot(-1, time.monotonic() - started, time.monotonic(), None)
    return Shot(answer.status_code, time.monotonic() - started, time.monotonic(), answer.headers.get("retry-after"))


async def recovery_s(client: httpx.AsyncClient, threshold_s: float) -> float:
    """Seconds from the burst's end until three probes in a row answer within `threshold_s`."""
    started, streak, probes = time.monotonic(), [], bodies(400, "recover")
    for payload in probes:
        sent = time.monotonic()
        streak = [*streak, sent] if await one_latency(client, payload) <= threshold_s else []
        if len(streak) == 3:
            return streak[0] - started
        if sent - started > 30:
            break
    return float("inf")


async def burst(url: str, rate_rps: float, seconds: float, threshold_s: float) -> tuple[list[Shot], float, float]:
    """Open loop at `rate_rps` for `seconds`; returns the shots, the start time and the recovery time."""
    payloads = bodies(256, "burst")
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=4000)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=DEADLINE_MS / 1000 + 15, limits=limits) as client:
        tasks: list[asyncio.Future[Shot]] = []
        started = time.monotonic()
        while (now := time.monotonic()) < started + seconds:
            while len(tasks) < int((now - started) * rate_rps) + 1:
                tasks.append(asyncio.ensure_future(shot(client, payloads[len(tasks) % len(payloads)])))
            await asyncio.sleep(0.002)
        recovered = await recovery_s(client, threshold_s)
        return list(await asyncio.gather(*tasks)), started, recovered


def judge_shots(shots: list[Shot], row: SuiteRow) -> Counter[int]:
    statuses = Counter(s.status for s in shots)
    row.cases += len(shots)
    row.lost += statuses[-1]
    late = [s for s in shots if s.elapsed_s > DEADLINE_MS / 1000 + SLACK_S]
    unexpected = [s for s in shots if s.status not in (-1, 200, 429, 503, 504)]
    no_retry_after = [s for s in shots if s.status in (429, 503) and not s.retry_after]
    row.failures += len(late) + len(unexpected) + len(no_retry_after)
    row.examples += [f"late: {s}" for s in late[:3]] + [f"{s}" for s in (unexpected + no_retry_after)[:3]]
    return statuses


@pytest.mark.skipif((os.cpu_count() or 1) < 4 and os.environ.get("PARETORM_RELIABILITY_FORCE_BURST") != "1",
                    reason="not measurable here: on 2 cores this one Python client cannot offer 10x the tiny "
                    "model's capacity (~1400 items/s) while the service needs the same cores (2026-12-03: client "
                    "at 92% CPU, no result after 7 min); needs >= 4 cores or a separate load generator "
                    "(PARETORM_RELIABILITY_FORCE_BURST=1 runs it anyway)")
@pytest.mark.timeout(BURST_S + 240)
def test_burst_at_ten_times_capacity(service: ServiceProcess, summary: Summary) -> None:
    row = SuiteRow(f"overload: 10x capacity for {BURST_S:.0f} s")
    summary.rows.append(row)
    cap = asyncio.run(capacity(service.url))

    async def unloaded_p50() -> float:
        async with httpx.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as client:
            return statistics.median([await one_latency(client, p) for p in bodies(20, "base")])
    base = asyncio.run(unloaded_p50())
    threshold = max(2 * base, base + 0.025)
    rate = 10 * cap / ITEMS
    shots, started, recovered = asyncio.run(burst(service.url, rate, BURST_S, threshold))
    statuses = judge_shots(shots, row)
    window = [s for s in shots if s.status == 200 and started + 2 <= s.finished_at <= started + BURST_S]
    admitted = len(window) * ITEMS / max(BURST_S - 2, 1e-6)
    row.max_rss_mb = peak_rss_mb(service.process.pid)  # type: ignore[union-attr]
    row.note = (f"capacity {cap:.0f} items/s ({cap / ITEMS:.0f} req/s of {ITEMS}); offered {len(shots) / BURST_S:.0f} "
                f"req/s; answers {dict(sorted(statuses.items()))}; admitted {admitted:.0f} items/s "
                f"({admitted / cap:.0%} of unloaded); p50 unloaded {base * 1000:.0f} ms, back under "
                f"{threshold * 1000:.0f} ms {recovered:.1f} s after the burst; peak RSS {row.max_rss_mb:.0f} MB")
    assert row.lost == 0 and row.failures == 0, row.examples
    assert len(shots) >= 8 * cap / ITEMS * BURST_S, f"the client could not offer 8x capacity: {row.note}"
    assert statuses[429] > 0, f"no 429: the burst did not overload the service; {row.note}"
    assert admitted >= 0.8 * cap, row.note
    assert row.max_rss_mb < RSS_BOUND_MB, row.note
    assert recovered <= RECOVERY_BOUND_S, row.note


def raw_request(body: bytes) -> bytes:
    head = (f"POST /v1/score HTTP/1.1\r\nHost: paretorm\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def connect(port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # set before connect, so the window the server sees is this small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    return sock


class SlowClients:
    """Slowloris (headers or body one byte a second) and readers that never read a large response."""

    def __init__(self, port: int, drippers: int = 10, non_readers: int = 6) -> None:
        request = raw_request(bodies(1, "slow")[0])
        head_end = request.index(b"\r\n\r\n") + 4
        # Half stop mid-headers, half send whole headers and drip the body: both are requests in progress.
        self.pending = [request[:40] if i % 2 else request[:head_end] for i in range(drippers)]
        self.drippers = [connect(port) for _ in range(drippers)]
        self.rest = [request[40:] if i % 2 else request[head_end:] for i in range(drippers)]
        large = raw_request(bodies(1, "large", size=256)[0])
        self.non_readers = [connect(port, receive_buffer=4096) for _ in range(non_readers)]
        for sock in self.non_readers:
            sock.sendall(large * 2)  # two pipelined requests whose answers (~100 KB each) nobody reads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def _drip(self) -> None:
        for sock, start in zip(self.drippers, self.pending, strict=True):
            sock.sendall(start)
        position = 0
        while not self._stop.wait(1.0):
            for sock, rest in zip(self.drippers, self.rest, strict=True):
                if position < len(rest) - 1:  # never the last byte: the request stays incomplete
                    sock.sendall(rest[position:position + 1])
            position += 1

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.drippers + self.non_readers:
            sock.close()


def probe_while(client: httpx.Client, seconds: float, row: SuiteRow) -> list[float]:
    """One-item requests back to back for `seconds`; each must be a 200 within GOOD_BOUND_S."""
    latencies, stop, n = [], time.monotonic() + seconds, 0
    while time.monotonic() < stop:
        started = time.monotonic()
        try:
            answer = client.post("/v1/score", json={"items": [item(n, "probe")]})
            ok = answer.status_code == 200
        except httpx.HTTPError as error:
            ok, answer = False, error  # type: ignore[assignment]
        latencies.append(time.monotonic() - started)
        row.cases += 1
        if not ok or latencies[-1] > GOOD_BOUND_S:
            row.failures += 1
            row.examples.append(f"probe {n}: {answer!r} after {latencies[-1]:.2f} s")
        n += 1
        time.sleep(0.05)
    return latencies


@pytest.mark.timeout(SLOW_S + 240)
def test_slow_clients_do_not_pin_the_service(service: ServiceProcess, summary: Summary) -> None:
    row = SuiteRow("overload: slowloris x10 + non-readers x6")
    summary.rows.append(row)
    pid = service.process.pid  # type: ignore[union-attr]
    fds_before, rss_before = open_fds(pid), rss_mb(pid)
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=30) as client:
        with SlowClients(service.port):
            time.sleep(0.5)
            fds_held = open_fds(pid)
            latencies = probe_while(client, SLOW_S, row)
        time.sleep(2.0)  # closed sockets: uvicorn notices at its next read or write
        fds_after = open_fds(pid)
        row.failures += probe_while(client, 1.0, row) == []  # still serving after they left
    row.max_rss_mb = peak_rss_mb(pid)
    row.note = (f"{len(latencies)} good requests while 16 slow connections were held: p50 "
                f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms (bound "
                f"{GOOD_BOUND_S:.0f} s); service fds {fds_before} -> {fds_held} held -> {fds_after} after; RSS "
                f"{rss_before:.0f} -> {rss_mb(pid):.0f} MB")
    assert row.failures == 0, row.examples[:5]
    assert fds_held >= fds_before + 10, f"the slow connections never reached the service: {row.note}"
    assert fds_after <= fds_before + 2, f"connections left open after their clients went: {row.note}"
