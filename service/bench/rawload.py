"""Open-loop HTTP/1.1 load from a few processes, cheap enough to overload a service on the cores it shares.

`loadgen.py` drives httpx, which is right for the benchmark (every answer parsed and checked) but costs
too much CPU to *overload* anything: on the shared 2-core AMD EPYC one httpx client at 92% of a core could
not offer 10x the tiny model's capacity while the service needed the same cores. Here each worker process
runs one asyncio loop over raw keep-alive connections (asyncio streams), writes pre-serialised request
bytes and reads back only the status line, Content-Length, Retry-After and Connection: no JSON, no header
objects, no per-request allocation beyond the answer's bytes.

Open loop: the k-th request is due at start + k / rate whatever the server does (worker w sends
k = w, w + W, ...); latency is counted from the due time, so a server that falls behind shows it (no
coordinated omission), and the lag between due and actual send is kept, so a generator that could not
keep up shows that too instead of quietly offering less. A request without a complete answer within
`timeout_s` of its send is HUNG and its connection is dropped.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

NO_ANSWER = -1  # the connection failed or closed before a whole answer arrived
HUNG = -2  # no whole answer within timeout_s of the send
IDLE_REUSE_S = 4.0  # uvicorn closes keep-alive connections idle for 5 s: never reuse one that old


def request_bytes(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST, serialised once, sent as is."""
    lines = [f"POST {path} HTTP/1.1", "Host: loadgen", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class Shot:
    due_s: float  # when it should have left, seconds after the start
    sent_s: float
    finished_s: float
    status: int  # the HTTP status, NO_ANSWER or HUNG
    retry_after: str | None

    @property
    def latency_s(self) -> float:
        """From the due time: waiting in the generator counts against the server's figure, never for it."""
        return self.finished_s - self.due_s


@dataclass
class BurstResult:
    shots: list[Shot]
    rate_per_s: float
    duration_s: float
    connections_opened: int = 0

    @property
    def statuses(self) -> Counter[int]:
        return Counter(shot.status for shot in self.shots)

    @property
    def sent_per_s(self) -> float:
        """Requests actually sent within the burst's window, per second: the rate really offered."""
        return sum(shot.sent_s <= self.duration_s for shot in self.shots) / self.duration_s

    def send_lag_s(self, quantile: float) -> float:
        lags = sorted(shot.sent_s - shot.due_s for shot in self.shots)
        return lags[min(len(lags) - 1, int(quantile * len(lags)))] if lags else 0.0


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used_at: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, str | None, bool, bytes]:
    """Status, Retry-After, whether the connection stays open, and the body's bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, retry_after, keep, chunked = 0, None, True, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after":
            retry_after = value.strip().decode()
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    body = b""
    if chunked:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        await reader.readuntil(b"\r\n")  # the empty trailer
        body = b"".join(parts)
    elif length:
        body = await reader.readexactly(length)
    return status, retry_after, keep, body


class RawClient:
    """JSON POSTs over a pool of keep-alive HTTP/1.1 connections, for `loadgen`'s closed and open loops.

    The benchmark's client shares the cores with the server it measures, so every core-second it spends is
    taken from the server: single-item `/v1/score` requests at 32 x 1 cost 4.5 ms of client CPU each through
    httpx, 0.35 ms through this (medians of 6 alternating rounds, 2-core Intel Xeon with AMX-BF16; at ~45
    requests/s httpx held ~0.2 of the 2 cores). It sends and reads whole bodies (the caller parses and checks
    the answers); no redirects, proxies, TLS or cookies: loopback benchmarks only.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"RawClient speaks plain http to host:port, not {base_url!r}")
        self._pool = _Worker(parts.hostname, parts.port, timeout_s)  # its connection pool and timeout

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST; raises OSError / TimeoutError / IncompleteReadError on a broken answer."""
        conn = await self._pool.connection()
        try:
            async with asyncio.timeout(self._pool.timeout_s):
                conn.writer.write(request_bytes(path, body, {"Content-Type": "application/json"}))
                await conn.writer.drain()
                status, _, keep, answer = await read_answer(conn.reader)
        except BaseException:
            conn.close()
            raise
        if keep:
            conn.used_at = time.monotonic()
            self._pool.idle.append(conn)
        else:
            conn.close()
        return status, answer

    def close(self) -> None:
        for conn in self._pool.idle:
            conn.close()
        self._pool.idle.clear()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Worker:
    """One process's share of the schedule, over its own pool of keep-alive connections."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.idle: list[_Connection] = []
        self.opened = 0
        self.shots: list[tuple[float, float, float, int, str | None]] = []

    async def connection(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if time.monotonic() - conn.used_at < IDLE_REUSE_S:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.opened += 1
        return _Connection(reader, writer)

    async def one(self, payload: bytes, due: float, start: float) -> None:
        sent = time.monotonic()
        conn: _Connection | None = None
        status, retry_after = NO_ANSWER, None
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self.connection()
                conn.writer.write(payload)
                await conn.writer.drain()
                status, retry_after, keep, _ = await read_answer(conn.reader)
            conn.used_at = time.monotonic()
            if keep:
                self.idle.append(conn)
                conn = None
        except TimeoutError:
            status = HUNG
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            status = NO_ANSWER
        finally:
            if conn is not None:
                conn.close()
        self.shots.append((due - start, sent - start, time.monotonic() - start, status, retry_after))

    async def run(self, payloads: Sequence[bytes], dues: Sequence[float], start: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        for index, due in enumerate(dues):
            delay = start + due - time.monotonic()
            await asyncio.sleep(max(0.0, delay))  # 0 still yields, so answers are read while behind
            tasks.append(asyncio.create_task(self.one(payloads[index % len(payloads)], start + due, start)))
        await asyncio.gather(*tasks)
        for conn in self.idle:
            conn.close()


def _worker_main(channel: Connection, host: str, port: int, payloads: list[bytes], dues: list[float],
                 timeout_s: float, warm_connections: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per request in flight
    worker = _Worker(host, port, timeout_s)

    async def main() -> None:
        worker.idle = [await worker.connection() for _ in range(warm_connections)]
        channel.send("ready")
        start = channel.recv()  # a time.monotonic() value: CLOCK_MONOTONIC, the same in every process
        await worker.run(payloads, dues, start)

    asyncio.run(main())
    channel.send((worker.shots, worker.opened))
    channel.close()


class OpenLoopBurst:
    """`rate_per_s` requests a second for `duration_s`, from `processes` worker processes.

    Use as a context manager: entering starts the workers and opens their first connections;
    `start()` releases them all at once and returns the common start time (time.monotonic()), so the
    caller can do its own work (probes) while the burst runs; `collect()` waits for every answer.
    """

    def __init__(self, host: str, port: int, payloads: Sequence[bytes], *, rate_per_s: float,
                 duration_s: float, timeout_s: float, processes: int = 2, warm_connections: int = 32) -> None:
        self.rate_per_s, self.duration_s = rate_per_s, duration_s
        total = int(rate_per_s * duration_s)
        context = multiprocessing.get_context("spawn")  # no forked copy of the caller's threads or torch
        self._channels: list[Connection] = []
        self._processes = []
        for w in range(processes):
            mine, theirs = context.Pipe()
            dues = [k / rate_per_s for k in range(w, total, processes)]
            shares = list(payloads[w::processes]) or list(payloads)  # no body sent by two workers
            process = context.Process(target=_worker_main, daemon=True, name=f"rawload-{w}",
                                      args=(theirs, host, port, shares, dues, timeout_s, warm_connections))
            process.start()
            theirs.close()
            self._channels.append(mine)
            self._processes.append(process)

    def __enter__(self) -> OpenLoopBurst:
        for channel in self._channels:
            if channel.recv() != "ready":
                raise RuntimeError("a load worker failed to start")
        return self

    def start(self, delay_s: float = 0.2) -> float:
        start = time.monotonic() + delay_s
        for channel in self._channels:
            channel.send(start)
        return start

    def collect(self) -> BurstResult:
        result = BurstResult([], self.rate_per_s, self.duration_s)
        for channel in self._channels:
            shots, opened = channel.recv()
            result.shots += [Shot(*shot) for shot in shots]
            result.connections_opened += opened
        result.shots.sort(key=lambda shot: shot.due_s)
        return result

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


async def closed_loop(host: str, port: int, payloads: Sequence[bytes], *, concurrency: int,
                      duration_s: float, warmup_s: float = 1.0) -> tuple[int, list[float]]:
    """`concurrency` connections each sending its next request when the last is answered, in this process.

    Returns the requests answered 200 within the `duration_s` window after `warmup_s`, and their latencies.
    Any other answer raises: capacity is only measured while the service is healthy.
    """
    worker = _Worker(host, port, timeout_s=120.0)
    window_start = time.monotonic() + warmup_s
    window_end = window_start + duration_s

    async def client(c: int) -> None:
        n = c
        while time.monotonic() < window_end:
            sent = time.monotonic()
            await worker.one(payloads[n % len(payloads)], sent, 0.0)
            if worker.shots[-1][3] != 200:
                raise RuntimeError(f"closed loop: status {worker.shots[-1][3]} from an unloaded service")
            n += concurrency

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    for conn in worker.idle:
        conn.close()
    counted = [(sent, done) for _, sent, done, _, _ in worker.shots if window_start <= done <= window_end]
    return len(counted), [finished - sent for sent, finished in counted]
