"""Replica pool: out after failures, back after the cool-down, busy replicas skipped, DNS discovery."""

from __future__ import annotations

from clients._pool import ReplicaPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_replica_is_taken_out_after_failures_and_put_back_after_cooldown() -> None:
    clock = FakeClock()
    pool = ReplicaPool(["http://a", "http://b"], failures_before_out=2, cooldown_s=10, clock=clock)
    a, b = pool.replicas
    for _ in range(2):
        pool.started(a)
        pool.failed(a)
    assert all(pool.pick()[0] is b for _ in range(5))
    clock.now += 10.5
    picked = {pool.pick()[0].url for _ in range(4)}
    assert picked == {"http://a", "http://b"}  # back on probation, sharing load again
    pool.started(a)
    pool.failed(a)
    assert all(pool.pick()[0] is b for _ in range(3))  # one more failure on probation: out again


def test_busy_replica_is_skipped_and_waited_for_when_alone() -> None:
    clock = FakeClock()
    pool = ReplicaPool(["http://a", "http://b"], clock=clock)
    a, b = pool.replicas
    pool.started(a)
    pool.busy(a, 3.0)
    assert pool.pick() == (b, 0.0)
    pool.started(b)
    pool.busy(b, 1.0)
    replica, wait = pool.pick()
    assert replica is b and wait == 1.0


def test_all_out_replicas_are_retried_without_waiting_out_the_cooldown() -> None:
    pool = ReplicaPool(["http://a"], failures_before_out=1, cooldown_s=60, clock=FakeClock())
    (a,) = pool.replicas
    pool.started(a)
    pool.failed(a)
    assert pool.pick() == (a, 0.0) and pool.all_out()


def test_discovery_makes_one_replica_per_address_and_keeps_the_host_header() -> None:
    addresses = {"rm.ns.svc": ["10.0.0.1", "10.0.0.2"]}
    pool = ReplicaPool(["http://rm.ns.svc:8000"], discover=True, resolver=lambda host, port: addresses[host])
    assert [r.url for r in pool.replicas] == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert {r.host_header for r in pool.replicas} == {"rm.ns.svc:8000"}
    addresses["rm.ns.svc"] = ["10.0.0.2", "10.0.0.3"]
    kept = pool.replicas[1]
    pool.rediscover()
    assert [r.url for r in pool.replicas] == ["http://10.0.0.2:8000", "http://10.0.0.3:8000"]
    assert pool.replicas[0] is kept
