"""Replica pool: spread calls over several service URLs, take failing ones out, put them back later.

Policy, in order of preference when a call needs a replica:
1. replicas that are in service, not known to be busy, and not already failed during this call, the one
   with the fewest calls in flight (ties broken round-robin, so equal replicas share load evenly);
2. if none is free right now, the replica whose `Retry-After` ends soonest, with that wait; replicas
   that are out are tried again then too (after the caller's backoff), since no other one works.

A replica is *out* after `failures_before_out` consecutive failures (connection errors, 502, 503) and
comes back on probation after `cooldown_s`: one success restores it, one more failure sends it out
again. A 429 or a 503 with `Retry-After` also marks the replica *busy* until that time, so a call moves
to another replica instead of waiting when one is free.

"One Kubernetes Service" URLs: with `discover=True` the host name is resolved to all its addresses (a
headless Service lists every pod) and each address becomes a replica; the original host name is kept in
the `Host` header. Re-resolution happens when every replica is out. No I/O here besides that DNS lookup.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

Resolver = Callable[[str, int], list[str]]


def resolve_all(host: str, port: int) -> list[str]:
    """Every address of `host` (IPv4 and IPv6), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


@dataclass(eq=False)
class Replica:
    """One service base URL and what the pool knows about it."""

    url: str
    host_header: str | None = None
    in_flight: int = 0
    consecutive_failures: int = 0
    out_until: float = 0.0
    busy_until: float = 0.0
    successes: int = 0
    failures: int = 0
    overloaded: int = 0

    def free_at(self) -> float:
        return max(self.out_until, self.busy_until)


@dataclass
class ReplicaPool:
    """Thread-safe pool of replicas (the async client shares the same object from one thread)."""

    urls: Sequence[str]
    failures_before_out: int = 2
    cooldown_s: float = 10.0
    discover: bool = False
    clock: Callable[[], float] = time.monotonic
    resolver: Resolver = resolve_all
    replicas: list[Replica] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _turn: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError(
                "no service URL: pass url='http://host:port' (or a list of them) or set PARETORM_URL"
            )
        if self.failures_before_out < 1:
            raise ValueError(f"failures_before_out must be >= 1, got {self.failures_before_out}")
        self.replicas = self._build()

    def _build(self) -> list[Replica]:
        replicas: list[Replica] = []
        for url in self.urls:
            replicas.extend(self._expand(url) if self.discover else [Replica(url.rstrip("/"))])
        return replicas

    def _expand(self, url: str) -> list[Replica]:
        parts = urlsplit(url.rstrip("/"))
        if parts.hostname is None:
            raise ValueError(f"cannot discover replicas of {url!r}: it has no host name")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self.resolver(parts.hostname, port)
        except OSError:
            addresses = []
        if not addresses:
            return [Replica(url.rstrip("/"))]
        replicas = []
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            netloc = f"{host}:{port}"
            replicas.append(Replica(urlunsplit((parts.scheme, netloc, parts.path, "", "")), parts.netloc))
        return replicas

    def rediscover(self) -> None:
        """Resolve the Service names again (new pods), keeping the state of replicas that stay."""
        if not self.discover:
            return
        fresh = self._build()
        with self._lock:
            known = {r.url: r for r in self.replicas}
            self.replicas = [known.get(r.url, r) for r in fresh]

    def pick(self, avoid: Sequence[Replica] = ()) -> tuple[Replica, float]:
        """The replica to use next and how long to wait before using it (0 when it is free now)."""
        with self._lock:
            now = self.clock()
            free = [r for r in self.replicas if r.free_at() <= now]
            preferred = [r for r in free if r not in avoid] or free
            if preferred:
                self._turn += 1
                n = len(self.replicas)
                order = {id(r): (i - self._turn) % n for i, r in enumerate(self.replicas)}
                chosen = min(preferred, key=lambda r: (r.in_flight, order[id(r)]))
                return chosen, 0.0
            # Every replica is out or busy. Being out only steers load away from a replica while others
            # work; with none working, waiting out a cooldown would be slower than the caller's backoff.
            soonest = min(self.replicas, key=lambda r: (max(r.busy_until, now), r in avoid, r.out_until))
            return soonest, max(0.0, soonest.busy_until - now)

    def all_out(self) -> bool:
        now = self.clock()
        return all(r.out_until > now for r in self.replicas)

    def started(self, replica: Replica) -> None:
        with self._lock:
            replica.in_flight += 1

    def succeeded(self, replica: Replica) -> None:
        with self._lock:
            replica.in_flight -= 1
            replica.successes += 1
            replica.consecutive_failures = 0
            replica.out_until = 0.0

    def answered(self, replica: Replica) -> None:
        """The replica answered (even with an error that is the input's fault): it is alive."""
        self.succeeded(replica)

    def failed(self, replica: Replica, retry_after_s: float | None = None) -> None:
        """Connection error, 502 or 503: count towards taking the replica out."""
        with self._lock:
            replica.in_flight -= 1
            replica.failures += 1
            replica.consecutive_failures += 1
            now = self.clock()
            if replica.consecutive_failures >= self.failures_before_out:
                replica.out_until = now + self.cooldown_s
            if retry_after_s is not None:
                replica.busy_until = max(replica.busy_until, now + retry_after_s)

    def busy(self, replica: Replica, retry_after_s: float) -> None:
        """429: alive but full; avoid it until `Retry-After` has passed."""
        with self._lock:
            replica.in_flight -= 1
            replica.overloaded += 1
            replica.consecutive_failures = 0
            replica.busy_until = max(replica.busy_until, self.clock() + retry_after_s)
