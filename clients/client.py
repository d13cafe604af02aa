"""`RewardClient`: the synchronous client trainers hold.

    with RewardClient("http://rm:8000") as rc:
        rc.wait_until_ready(timeout_s=300)
        batch = rc.score_pairs(prompts, completions)
        batch.scores, batch.objective("helpsteer-helpfulness"), batch[0].rewards["helpsteer-helpfulness"]

Large inputs are cut to the server's advertised limits and the pieces are sent from a thread pool
(`concurrency` at once; `httpx.Client` is thread-safe). See `clients._base` for the retry policy and
`clients._pool` for how several replicas share the load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeVar

import httpx

from clients._base import Call, encode_json, parse_body
from clients._core import BaseRewardClient, GroupLike, ItemLike, Plan, RequestSpec
from clients.errors import RewardServiceError, Timeout, Unauthorized
from clients.protocol import (
    GetRewardResponse,
    JudgeInfo,
    JudgeItem,
    JudgeItemResult,
    JudgeListResponse,
    ModelInfo,
    ObjectiveWeights,
    PamaResponse,
    Prompt,
    Truncation,
)
from clients.results import GroupResult, ScoreBatch

R = TypeVar("R")


class RewardClient(BaseRewardClient):
    """Synchronous client of a paretorm service (one URL, a list of replicas, or `PARETORM_URL`).

    Args:
        url: base URL, a list of replica URLs, or None to read `PARETORM_URL` (comma-separated).
        api_key: bearer key; None reads `PARETORM_API_KEY`.
        timeout: per-attempt httpx timeout. deadline_s: total budget of one call, retries included.
        retry: backoff policy. concurrency: requests in flight at once for one split call.
        failures_before_out / cooldown_s: when a replica is taken out, and for how long.
        discover: resolve a (headless Kubernetes Service) host name to one replica per address.
        transport: an `httpx.BaseTransport` (tests pass `httpx.MockTransport`).
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        limits = httpx.Limits(
            max_connections=self.concurrency * 2, max_keepalive_connections=self.concurrency
        )
        self._http = httpx.Client(transport=transport, timeout=self.timeout, limits=limits)

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, spec: RequestSpec[Any], call: Call, cancelled: threading.Event | None = None) -> Any:
        content = encode_json(spec.body) if spec.body is not None else None
        while True:
            if cancelled is not None and cancelled.is_set():
                raise RewardServiceError("cancelled: another part of the same call failed")
            replica, delay = call.next_replica()
            if delay > 0:
                time.sleep(delay)
            attempt = call.begin(spec.path, replica)
            try:
                response = self._http.request(
                    spec.method,
                    attempt.url,
                    content=content,
                    headers=attempt.headers,
                    timeout=attempt.timeout,
                )
            except httpx.TransportError as exc:
                call.on_exception(attempt, exc)
                continue
            except BaseException:
                self.pool.answered(replica)
                raise
            if call.on_response(attempt, response) is None:
                return parse_body(spec.model, response, attempt.url)

    def _run(self, plan: Plan[R], deadline_s: float | None) -> R:
        budget = self.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()
        cancelled = threading.Event()

        def one(spec: RequestSpec[Any]) -> Any:
            left = None if budget is None else budget - (time.monotonic() - started)
            if left is not None and left <= 0:
                raise Timeout(f"the call's deadline of {budget} s ran out before this part could be sent")
            return self._send(spec, self._new_call(left, budget), cancelled)

        if len(plan.specs) == 1:
            return plan.merge([one(plan.specs[0])])
        executor = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(plan.specs)), thread_name_prefix="paretorm"
        )
        try:
            futures = [executor.submit(one, spec) for spec in plan.specs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            return plan.merge([f.result() for f in futures])
        finally:
            cancelled.set()
            executor.shutdown(wait=False, cancel_futures=True)

    def _one(self, spec: RequestSpec[Any], deadline_s: float | None = None) -> Any:
        return self._run(Plan([spec], lambda answers: answers[0]), deadline_s)

    # -- service information ----------------------------------------------------------------------

    def model_info(self, *, refresh: bool = False) -> ModelInfo:
        """`GET /v1/model`: name, revision, objectives and limits (cached; `refresh=True` asks again)."""
        if self._info is None or refresh:
            self._info = self._one(RequestSpec("GET", "/v1/model", None, ModelInfo))
        return self._info

    def objectives(self) -> list[str]:
        return self.model_info().objectives

    def is_ready(self) -> bool:
        """True when at least one replica answers `GET /health/ready` with 200 (one try each)."""
        for replica in self.pool.replicas:
            headers = {"Host": replica.host_header} if replica.host_header else {}
            try:
                if (
                    self._http.get(replica.url + "/health/ready", headers=headers, timeout=2.0).status_code
                    == 200
                ):
                    return True
            except httpx.TransportError:
                continue
        return False

    def wait_until_ready(self, timeout_s: float = 300.0, *, poll_interval_s: float = 0.5) -> ModelInfo:
        """Block until a replica is ready (for trainers started before the service); return its model info."""
        give_up = time.monotonic() + timeout_s
        while True:
            if self.is_ready():
                try:
                    return self.model_info(refresh=True)
                except Unauthorized:
                    raise
                except RewardServiceError:
                    pass
            if time.monotonic() + poll_interval_s > give_up:
                raise Timeout(
                    f"no replica of {self.urls} became ready within {timeout_s} s; is the service started?"
                )
            time.sleep(poll_interval_s)

    # -- scoring ----------------------------------------------------------------------------------

    def score(
        self,
        items: Sequence[ItemLike],
        *,
        groups: Sequence[GroupLike] = (),
        weights: ObjectiveWeights | None = None,
        direction: ObjectiveWeights | None = None,
        truncation: Truncation | None = None,
        deadline_s: float | None = None,
    ) -> ScoreBatch:
        """Score conversations (`ScoreItem`s, their dicts, or `(prompt, response)` pairs), in input order.

        `groups` (one prompt, many responses) may ride along in the same call; their results are in
        `batch.groups`, in order.
        """
        request = self._score_request(
            items, groups, weights=weights, direction=direction, truncation=truncation
        )
        return self._run(self._plan_score(request, self.model_info()), deadline_s)

    def score_pairs(
        self,
        prompts: Sequence[Prompt | Sequence[Mapping[str, str]]],
        responses: Sequence[str],
        *,
        baselines: Sequence[str] | None = None,
        weights: ObjectiveWeights | None = None,
        direction: ObjectiveWeights | None = None,
        truncation: Truncation | None = None,
        deadline_s: float | None = None,
    ) -> ScoreBatch:
        """Score `responses[i]` against `prompts[i]` (text or chat messages)."""
        items = self._pairs(prompts, responses, baselines)
        return self.score(
            items, weights=weights, direction=direction, truncation=truncation, deadline_s=deadline_s
        )

    def score_groups(
        self,
        groups: Sequence[GroupLike],
        *,
        weights: ObjectiveWeights | None = None,
        direction: ObjectiveWeights | None = None,
        truncation: Truncation | None = None,
        deadline_s: float | None = None,
    ) -> list[GroupResult]:
        """Score GRPO groups (one prompt, many responses): the prompt is templated and computed once."""
        request = self._score_request((), groups, weights=weights, direction=direction, truncation=truncation)
        return self._run(self._plan_score(request, self.model_info()), deadline_s).groups

    def get_reward(self, queries: Sequence[str], *, deadline_s: float | None = None) -> GetRewardResponse:
        """OpenRLHF's `/get_reward`: full chat-templated texts in, gated scores and per-objective logs out."""
        return self._run(self._plan_get_reward(queries, self.model_info()), deadline_s)

    # -- objectives maths and judges --------------------------------------------------------------

    def pama_weights(
        self,
        advantages: Any,
        *,
        noon: bool = False,
        ratios: Any = None,
        clip_eps: float = 0.2,
        deadline_s: float | None = None,
    ) -> PamaResponse:
        """PAMA combination of per-objective advantages (`[..., n]` nested lists, arrays or tensors)."""
        return self._one(self._pama_spec(advantages, noon, ratios, clip_eps), deadline_s)

    def judges(self) -> list[JudgeInfo]:
        """`GET /v1/judges`: the rule judges the service offers, with their argument schemas."""
        return self._one(RequestSpec("GET", "/v1/judges", None, JudgeListResponse)).judges

    def judge(
        self, items: Sequence[JudgeItem | Mapping[str, Any]], *, deadline_s: float | None = None
    ) -> list[JudgeItemResult]:
        """Run rule judges on (prompt, response) pairs; `all_passed` is CGPO's feasibility."""
        return self._run(self._plan_judge(items, self.model_info()), deadline_s)


__all__ = ["RewardClient"]
