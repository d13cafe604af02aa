"""Open-loop latency points against a fake scoring server: each point sends items no other point sent, the
same-rate comparison offers every engine the same rates, settling before each point, and single items beside
batch clients are timed while the batch clients' own rate is counted."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.bench import beside_batches
from service.bench.scenarios_http import latency_points, same_rate_points, units_needed
from service.bench.targets import paretorm_items
from service.bench.workload import ChatItem

OBJECTIVES = 3


class _FakeScorer(ThreadingHTTPServer):
    """Answers /v1/score like the service (K rewards, K gate weights and a score per item) and records the
    prompts it was sent, so repeats across points are visible."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.prompts: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the bench's raw client expects

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server: _FakeScorer = self.server  # type: ignore[assignment]
        with server.lock:
            server.prompts += [item["prompt"] for item in body["items"]]
        row = {"rewards": [0.0] * OBJECTIVES, "gating": [1 / OBJECTIVES] * OBJECTIVES, "score": 0.0}
        answer = json.dumps({"results": [row for _ in body["items"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def scorers() -> Iterator[tuple[_FakeScorer, _FakeScorer]]:
    servers = (_FakeScorer(), _FakeScorer())
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _items(count: int, tag: str) -> list[ChatItem]:
    return [ChatItem(prompt=f"{tag} question {i}", response=f"answer {i}") for i in range(count)]


def test_each_latency_point_sends_its_own_items(scorers: tuple[_FakeScorer, _FakeScorer]) -> None:
    server = scorers[0]
    fractions, peak, seconds = (0.5, 1.0), 40.0, 0.5
    units = _items(units_needed([f * peak for f in fractions], seconds), "own")
    points = latency_points(paretorm_items(server.url, OBJECTIVES), units, max_items_per_s=peak,
                            fractions=fractions, duration_s=seconds, seed=0)
    assert [p["offered_items_per_s"] for p in points] == [20.0, 40.0]
    assert all(p["errors"] == 0 and p["requests"] > 0 for p in points)
    assert sum(p["requests"] for p in points) == len(server.prompts)
    assert len(set(server.prompts)) == len(server.prompts)  # no item was sent twice (caches see nothing again)


def test_same_rate_points_offer_every_engine_the_same_rates(scorers: tuple[_FakeScorer, _FakeScorer]) -> None:
    fractions, base, seconds = (0.5, 1.0), 30.0, 0.5
    needed = units_needed([f * base for f in fractions], seconds)
    settled: list[int] = []
    points = same_rate_points(
        {name: (paretorm_items(server.url, OBJECTIVES, name), _items(needed, name))
         for name, server in zip(("a", "b"), scorers, strict=True)},
        base_items_per_s=base, fractions=fractions, duration_s=seconds, seed=0,
        settle=lambda: settled.append(1),
    )  # fmt: skip
    assert set(points) == {"a", "b"} and len(settled) == 4  # settled before every engine's every point
    for engine, server in zip(("a", "b"), scorers, strict=True):
        assert [p["offered_items_per_s"] for p in points[engine]] == [15.0, 30.0]
        assert [p["requests"] for p in points[engine]] == [p["requests"] for p in points["a"]]  # same arrivals
        assert all(p["errors"] == 0 for p in points[engine])
        assert len(set(server.prompts)) == len(server.prompts) and server.prompts[0].startswith(engine)


def _fresh(tag: str) -> Callable[[int], list[ChatItem]]:
    """n never-seen items per call: a work-unit source as the runner passes one."""
    counter = itertools.count()
    return lambda count: [ChatItem(prompt=f"{tag} {next(counter)}", response="answer") for _ in range(count)]


def test_singles_beside_batches_time_the_singles_and_count_the_batches(
    scorers: tuple[_FakeScorer, _FakeScorer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(beside_batches, "FILL_S", 0.2)
    server, settled = scorers[0], []
    ours = (paretorm_items(server.url, OBJECTIVES), _fresh("ours"))
    section = beside_batches.beside_batches_section(
        {"paretorm": ours, "vllm": "vllm is not installed"}, {"paretorm": 400.0},
        clients=2, per_request=8, duration_s=0.6, seed=0, settle=lambda: settled.append(1),
    )  # fmt: skip
    assert section["vllm"] == {"status": "not run (vllm is not installed)"} and settled == [1]
    row = section["paretorm"]
    assert row["requests"] > 0 and row["errors"] == 0 and row["p99_ms"] >= row["p50_ms"] > 0
    assert row["batch_items_per_s"] > 0 and row["batch_clients"] == "2x8" and "status" not in row
    assert len(set(server.prompts)) == len(server.prompts)  # neither stream repeated an item


def test_batch_clients_that_run_out_of_items_say_so(
    scorers: tuple[_FakeScorer, _FakeScorer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(beside_batches, "FILL_S", 0.2)
    section = beside_batches.beside_batches_section(
        {"paretorm": (paretorm_items(scorers[0].url, OBJECTIVES), _fresh("short"))},
        {}, clients=2, per_request=4, duration_s=0.5, seed=0, settle=lambda: None,
    )  # fmt: skip
    assert "ran out" in section["paretorm"]["status"]  # 16 batch items: gone long before the singles end
