"""Admission: scoring requests over the limit get 429 before their body is read, and the count never leaks.

Found by the 10x burst (issue 11): the 429 was decided after the body had been read, parsed and tokenised,
so at 10x capacity the event loop spent its time on requests it then refused and the model starved.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from service.api.admission import SCORING_PATHS, Admission, AdmissionMiddleware
from service.app import create_app
from service.settings import ServiceSettings

BODY = json.dumps({"items": [{"prompt": "Hi", "response": "Hello"}]}).encode()


@dataclass
class FakeBatcher:
    expected_wait_s: float = 0.0
    queued_tokens: int = 0
    max_queue_tokens: int = 1000
    typical_request_tokens: float = 40.0
    submitted_requests: int = 0

    def has_room(self, arriving: int = 1) -> bool:
        return self.queued_tokens + arriving * self.typical_request_tokens <= self.max_queue_tokens

    def retry_after_s(self) -> float:
        return max(1.0, self.expected_wait_s)


@dataclass
class FakeRuntime:
    batcher: FakeBatcher = field(default_factory=FakeBatcher)
    ready: bool = True
    draining: bool = False
    inflight: int = 0


@dataclass
class FakeApp:
    """Stands in for `app` in the scope: the middleware reads `scope["app"].state.runtime`."""

    state: Any


class Client:
    """One request through an ASGI app, recording whether the body was read and what was sent."""

    def __init__(self, path: str = "/v1/score", headers: list[tuple[bytes, bytes]] | None = None,
                 disconnect: asyncio.Event | None = None) -> None:
        self.path, self.headers, self.disconnect = path, headers or [], disconnect
        self.body_reads = 0
        self.sent: list[Message] = []

    def scope(self, app: Any) -> Scope:
        return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                "scheme": "http", "path": self.path, "raw_path": self.path.encode(), "query_string": b"",
                "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "app": app,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode()), *self.headers]}

    async def receive(self) -> Message:
        if self.body_reads == 0:
            self.body_reads += 1
            return {"type": "http.request", "body": BODY, "more_body": False}
        if self.disconnect is not None:
            await self.disconnect.wait()
        else:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return next(int(m["status"]) for m in self.sent if m["type"] == "http.response.start")

    @property
    def response_headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {name.decode(): value.decode() for name, value in start["headers"]}

    @property
    def json(self) -> Any:
        chunks = [m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"]
        return json.loads(b"".join(chunks))


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A route that reads its body, then answers 200."""
    assert (await receive())["body"] == BODY
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def middleware(limit: int, inner: Any = ok_app,
               runtime: FakeRuntime | None = None) -> tuple[AdmissionMiddleware, Any]:
    state = type("State", (), {})()
    state.runtime = runtime if runtime is not None else FakeRuntime()
    return AdmissionMiddleware(inner, Admission(limit=limit)), FakeApp(state)


def assert_overloaded(client: Client, words: str) -> None:
    assert client.status == 429
    assert client.body_reads == 0, "the body was read before refusing"
    assert int(client.response_headers["retry-after"]) >= 1
    body = client.json
    assert set(body) == {"error"} and body["error"]["type"] == "overloaded"
    assert words in body["error"]["message"]


def test_over_the_limit_is_a_429_in_the_envelope_before_the_body_is_read() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario() -> None:
        guard, app = middleware(limit=2, inner=slow_app)
        first, second, third = Client(), Client("/get_reward"), Client("/v1/judge")
        held = [asyncio.ensure_future(guard(c.scope(app), c.receive, c.send)) for c in (first, second)]
        await asyncio.sleep(0.01)
        assert guard.admission.in_flight == 2
        await guard(third.scope(app), third.receive, third.send)
        assert_overloaded(third, "scoring requests are in flight")
        release.set()
        await asyncio.gather(*held)
        assert [first.status, second.status] == [200, 200]  # under the limit: unaffected
        assert guard.admission.in_flight == 0

    asyncio.run(scenario())


def test_the_count_returns_to_zero_after_errors_cancellations_and_disconnects() -> None:
    async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("the route failed")

    async def hanging_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await asyncio.Event().wait()

    async def disconnect_aware_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        assert (await receive())["type"] == "http.disconnect"  # the guard's watcher: the client left

    async def scenario() -> None:
        for inner in (ok_app, failing_app):
            guard, app = middleware(limit=1, inner=inner)
            client = Client()
            try:
                await guard(client.scope(app), client.receive, client.send)
            except RuntimeError:
                pass
            assert guard.admission.in_flight == 0, inner.__name__

        guard, app = middleware(limit=1, inner=hanging_app)
        client = Client()
        task = asyncio.ensure_future(guard(client.scope(app), client.receive, client.send))
        await asyncio.sleep(0.01)
        assert guard.admission.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert guard.admission.in_flight == 0

        gone = asyncio.Event()
        guard, app = middleware(limit=1, inner=disconnect_aware_app)
        client = Client(disconnect=gone)
        task = asyncio.ensure_future(guard(client.scope(app), client.receive, client.send))
        await asyncio.sleep(0.01)
        assert guard.admission.in_flight == 1
        gone.set()
        await task
        assert guard.admission.in_flight == 0
        after = Client(disconnect=gone)  # the slot is free again
        await guard(after.scope(app), after.receive, after.send)
        assert guard.admission.in_flight == 0

    asyncio.run(scenario())


def test_a_full_queue_and_an_unmeetable_deadline_are_refused_before_the_body_is_read() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime(batcher=FakeBatcher(queued_tokens=990))
        guard, app = middleware(limit=8, runtime=runtime)
        client = Client()
        await guard(client.scope(app), client.receive, client.send)
        assert_overloaded(client, "the queue is full")

        runtime.batcher = FakeBatcher(expected_wait_s=3.0)
        short = Client(headers=[(b"x-request-deadline-ms", b"2000")])
        await guard(short.scope(app), short.receive, short.send)
        assert_overloaded(short, "longer than this request's deadline")
        assert short.response_headers["retry-after"] == "3"
        for value in (b"5000", b"soon"):  # meetable, or malformed (the route answers that one with a 422)
            passing = Client(headers=[(b"x-request-deadline-ms", value)])
            await guard(passing.scope(app), passing.receive, passing.send)
            assert passing.status == 200 and passing.body_reads == 1
        assert guard.admission.in_flight == 0

    asyncio.run(scenario())


class SlowSender(Client):
    """A client whose body arrives only when `arrived` is set (slowloris: the headers, then nothing)."""

    def __init__(self, arrived: asyncio.Event) -> None:
        super().__init__()
        self.arrived = arrived

    async def receive(self) -> Message:
        if self.body_reads == 0:
            await self.arrived.wait()
        return await super().receive()


def test_requests_still_receiving_their_body_do_not_make_the_queue_look_full() -> None:
    """Found by the slowloris test: five dripping bodies, each taken for a typical request not yet queued,
    made the queue look full and every other client got 429."""

    async def hanging_app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await asyncio.Event().wait()  # parsing and tokenising, as far as admission can tell

    async def scenario() -> None:
        runtime = FakeRuntime(batcher=FakeBatcher(typical_request_tokens=400.0))  # room for 2 of them
        guard, app = middleware(limit=16, inner=hanging_app, runtime=runtime)
        arrived = asyncio.Event()
        slow = [SlowSender(arrived) for _ in range(5)]
        held = [asyncio.ensure_future(guard(c.scope(app), c.receive, c.send)) for c in slow]
        await asyncio.sleep(0.01)
        assert guard.admission.in_flight == 5 and guard.admission.read_unanswered == 0
        probe = Client()
        probing = asyncio.ensure_future(guard(probe.scope(app), probe.receive, probe.send))
        await asyncio.sleep(0.01)
        assert not probe.sent and probe.body_reads == 1  # admitted, not refused
        assert guard.admission.read_unanswered == 1
        arrived.set()  # the five bodies arrive: now six requests wait to be queued, room for two
        await asyncio.sleep(0.01)
        assert guard.admission.read_unanswered == 6
        refused = Client()
        await guard(refused.scope(app), refused.receive, refused.send)
        assert_overloaded(refused, "the queue is full")
        for task in [*held, probing]:
            task.cancel()
        await asyncio.gather(*held, probing, return_exceptions=True)
        assert guard.admission.in_flight == 0 and guard.admission.read_unanswered == 0

    asyncio.run(scenario())


def test_other_routes_loading_and_late_arrivals_in_a_drain_pass_through_uncounted() -> None:
    async def scenario() -> None:
        seen: list[int] = []

        async def counting_app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(guard.admission.in_flight)
            await ok_app(scope, receive, send)

        runtime = FakeRuntime(batcher=FakeBatcher(queued_tokens=1000))
        guard, app = middleware(limit=1, inner=counting_app, runtime=runtime)
        guard.admission.in_flight = 1  # at the limit, and the queue full
        for path in ("/health/live", "/health/ready", "/metrics", "/v1/pama/weights", "/v1/model"):
            client = Client(path)
            await guard(client.scope(app), client.receive, client.send)
            assert client.status == 200, path
        runtime.ready = False  # loading: the app's own 503
        loading = Client()
        await guard(loading.scope(app), loading.receive, loading.send)
        runtime.ready, runtime.draining = True, True
        late = Client()
        scope = late.scope(app)
        scope["state"] = {"paretorm_late": True}  # stamped by InstrumentationMiddleware: the app's 503
        await guard(scope, late.receive, late.send)
        assert loading.status == late.status == 200 and seen == [1] * 7

    asyncio.run(scenario())


def test_the_app_refuses_in_its_envelope_and_a_drain_still_answers_503() -> None:
    app = create_app(ServiceSettings(max_concurrent_requests=1))  # no lifespan: the fake runtime below
    assert app.state.admission.limit == 1
    assert SCORING_PATHS <= {getattr(route, "path", "") for route in app.routes}
    runtime = FakeRuntime()
    app.state.runtime = runtime
    app.state.admission.in_flight = 1

    async def call(client: Client) -> None:
        await app(client.scope(app), client.receive, client.send)

    refused = Client()
    asyncio.run(call(refused))
    assert_overloaded(refused, "PARETORM_MAX_CONCURRENT_REQUESTS")
    assert refused.response_headers["content-type"] == "application/json"

    runtime.draining = True  # a request arriving now is late: 503 draining, as before, not a 429
    late = Client()
    asyncio.run(call(late))
    assert late.status == 503 and late.json["error"]["type"] == "unavailable"
    assert "draining" in late.json["error"]["message"] and late.response_headers["retry-after"] == "1"
    assert app.state.admission.in_flight == 1  # the fake holder's slot only: nothing leaked


def test_the_default_limit_keeps_four_full_forwards_of_one_item_requests() -> None:
    assert ServiceSettings().concurrent_request_limit == 512
    assert ServiceSettings(max_batch_items=16).concurrent_request_limit == 512
    assert ServiceSettings(max_batch_items=256).concurrent_request_limit == 1024
    assert ServiceSettings(max_concurrent_requests=7).concurrent_request_limit == 7
