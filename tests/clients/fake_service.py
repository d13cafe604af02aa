"""A hand-written fake of the paretorm service for client tests (no torch, no sockets).

`FakeRewardService` implements the wire contract with the same protocol models the real service uses,
enforces the limits it advertises (413 when a request is too large, so a test proves the client split
it), answers deterministic per-objective rewards derived from the text, and can be scripted to fail:
`script` is a queue of statuses (or "connect" for a refused connection) served before normal answers.
`FakeCluster` routes requests by host to several fakes, as replicas. Both plug into
`httpx.MockTransport`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from clients import RetryPolicy
from clients.protocol import (
    ErrorDetail,
    ErrorResponse,
    GetRewardRequest,
    GetRewardResponse,
    GroupScores,
    ItemScore,
    JudgeInfo,
    JudgeItemResult,
    JudgeListResponse,
    JudgeRequest,
    JudgeResponse,
    JudgeResult,
    Limits,
    ModelInfo,
    PamaRequest,
    PamaResponse,
    ScoreRequest,
    ScoreResponse,
)

FAST_RETRY = RetryPolicy(max_attempts=6, initial_backoff_s=0.001, max_backoff_s=0.01)
"""Retries without real waiting, for tests against the fakes."""

OBJECTIVES = ["helpsteer-helpfulness", "helpsteer-verbosity", "code-complexity"]


def fake_rewards(prompt: Any, response: str) -> list[float]:
    """Deterministic rewards in [-1, 1) from the text: the same input gives the same numbers anywhere."""
    digest = hashlib.sha256(json.dumps([prompt, response]).encode()).digest()
    return [digest[i] / 128.0 - 1.0 for i in range(len(OBJECTIVES))]


def fake_item(prompt: Any, response: str, weights: list[float] | None) -> ItemScore:
    rewards = fake_rewards(prompt, response)
    gating = [1.0 / len(OBJECTIVES)] * len(OBJECTIVES)
    weighted = sum(w * r for w, r in zip(weights, rewards, strict=True)) if weights is not None else None
    return ItemScore(
        rewards=rewards,
        gating=gating,
        coefficients=gating,
        score=sum(rewards) / len(rewards),
        num_tokens=len(response.split()) + 3,
        weighted=weighted,
    )


def error(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
    body = ErrorResponse(error=ErrorDetail(type=kind, message=message)).model_dump()
    return httpx.Response(status, json=body, headers=dict(headers or {}))


@dataclass
class FakeRewardService:
    """One fake replica. Thread-safe: the sync client sends split pieces from several threads."""

    name: str = "fake-rm"
    revision: str = "rev-1"
    max_items: int = 1024
    max_body_bytes: int = 1 << 20
    api_key: str | None = None
    retry_after: str = "0"
    script: list[int | str] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    scored: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> ModelInfo:
        limits = Limits(
            max_input_tokens=4096,
            max_items_per_request=self.max_items,
            max_body_bytes=self.max_body_bytes,
            max_batch_tokens=16384,
            max_queue_tokens=100000,
            truncation="error",
        )
        return ModelInfo(
            name=self.name,
            revision=self.revision,
            kind="armorm",
            objectives=OBJECTIVES,
            dtype="float32",
            device="cpu",
            backend="fake",
            is_demo=True,
            limits=limits,
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            scripted = self.script.pop(0) if self.script else None
        if scripted == "connect":
            raise httpx.ConnectError("connection refused (scripted)", request=request)
        if isinstance(scripted, int):
            headers = {"Retry-After": self.retry_after} if scripted in (429, 503) else {}
            return error(scripted, "scripted", f"scripted {scripted}", headers)
        path = request.url.path
        if path.startswith("/health/"):
            return httpx.Response(200, json={"status": "ok"})
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "unauthorized", "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
        if len(request.content) > self.max_body_bytes:
            return error(
                413, "payload_too_large", f"body of {len(request.content)} bytes > {self.max_body_bytes}"
            )
        route = {
            ("GET", "/v1/model"): lambda: self.info(),
            ("POST", "/v1/score"): lambda: self._score(request),
            ("POST", "/get_reward"): lambda: self._get_reward(request),
            ("POST", "/v1/pama/weights"): lambda: self._pama(request),
            ("POST", "/v1/judge"): lambda: self._judge(request),
            ("GET", "/v1/judges"): lambda: JudgeListResponse(
                judges=[JudgeInfo(name="max_words", description="at most n words", args_schema={"n": "int"})]
            ),
        }.get((request.method, path))
        if route is None:
            return error(404, "not_found", f"no route {request.method} {path}")
        try:
            answer = route()
        except (TypeError, ValueError, AttributeError) as exc:  # input the real service refuses with a 422
            return error(422, "invalid_request", str(exc))
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, content=answer.model_dump_json())

    def _score(self, request: httpx.Request) -> ScoreResponse | httpx.Response:
        try:
            body = ScoreRequest.model_validate_json(request.content)
        except ValueError as exc:
            return error(422, "invalid_request", str(exc))
        if body.num_conversations() > self.max_items:
            return error(413, "payload_too_large", f"{body.num_conversations()} items > {self.max_items}")
        weights = body.weights if isinstance(body.weights, list) else None
        results = []
        for item in body.items:
            prompt = item.prompt if item.messages is None else [m.model_dump() for m in item.messages[:-1]]
            response = item.response if item.messages is None else item.messages[-1].content
            prompt = (
                prompt
                if isinstance(prompt, str) or prompt is None
                else [m if isinstance(m, dict) else m.model_dump() for m in prompt]
            )
            results.append(fake_item(prompt, response or "", weights))
        groups = []
        for group in body.groups:
            prompt = group.prompt if isinstance(group.prompt, str) else [m.model_dump() for m in group.prompt]
            scored = [fake_item(prompt, r, weights) for r in group.responses]
            baseline = fake_item(prompt, group.baseline, None).score if group.baseline is not None else None
            groups.append(GroupScores(results=scored, baseline_score=baseline))
        with self._lock:
            self.scored.append(body)
        return ScoreResponse(
            model=self.name, revision=self.revision, objectives=OBJECTIVES, results=results, groups=groups
        )

    def _get_reward(self, request: httpx.Request) -> GetRewardResponse | httpx.Response:
        body = GetRewardRequest.model_validate_json(request.content)
        if len(body.query) > self.max_items:
            return error(413, "payload_too_large", f"{len(body.query)} queries > {self.max_items}")
        items = [fake_item(None, q, None) for q in body.query]
        with self._lock:
            self.scored.append(body)
        logs = {name: [i.rewards[k] for i in items] for k, name in enumerate(OBJECTIVES)}
        scores = [i.score for i in items]
        return GetRewardResponse(rewards=scores, scores=scores, extra_logs=logs)

    def _pama(self, request: httpx.Request) -> PamaResponse:
        body = PamaRequest.model_validate_json(request.content)
        rows = body.advantages
        combined = [min(row) for row in rows]
        weights = [[1.0 if j == row.index(min(row)) else 0.0 for j in range(len(row))] for row in rows]
        return PamaResponse(combined=combined, weights=weights)

    def _judge(self, request: httpx.Request) -> JudgeResponse:
        body = JudgeRequest.model_validate_json(request.content)
        out = []
        for item in body.items:
            results = [
                JudgeResult(
                    name=j.name, passed=len(item.response.split()) <= int(j.args.get("n", 10)), reason="words"
                )
                for j in item.judges
            ]
            out.append(JudgeItemResult(results=results, all_passed=all(r.passed for r in results)))
        return JudgeResponse(results=out)


@dataclass
class FakeCluster:
    """Routes by `scheme://host:port` to one fake per replica; a replica in `down` refuses connections."""

    replicas: dict[str, FakeRewardService]
    down: set[str] = field(default_factory=set)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.netloc.decode()}"
        if base in self.down:
            raise httpx.ConnectError(f"{base} refused the connection", request=request)
        return self.replicas[base](request)


def transport(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)
