"""`AsyncRewardClient`: the asyncio twin of `RewardClient`, same methods, awaited.

    async with AsyncRewardClient("http://rm:8000") as rc:
        batch = await rc.score_pairs(prompts, completions)

Split calls run their pieces as tasks under a semaphore of `concurrency`; the first piece that fails
cancels the others. Retry, deadline and replica behaviour are those of `clients._base` / `clients._pool`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
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


class AsyncRewardClient(BaseRewardClient):
    """Asynchronous client of a paretorm service; arguments as `RewardClient` (transport: async)."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        limits = httpx.Limits(
            max_connections=self.concurrency * 2, max_keepalive_connections=self.concurrency
        )
        self._http = httpx.AsyncClient(transport=transport, timeout=self.timeout, limits=limits)

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- sending ----------------------------------------------------------------------------------

    async def _send(self, spec: RequestSpec[Any], call: Call) -> Any:
        content = encode_json(spec.body) if spec.body is not None else None
        while True:
            replica, delay = call.next_replica()
            if delay > 0:
                await asyncio.sleep(delay)
            attempt = call.begin(spec.path, replica)
            try:
                response = await self._http.request(
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

    async def _run(self, plan: Plan[R], deadline_s: float | None) -> R:
        budget = self.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(spec: RequestSpec[Any]) -> Any:
            async with gate:
                left = None if budget is None else budget - (time.monotonic() - started)
                if left is not None and left <= 0:
                    raise Timeout(f"the call's deadline of {budget} s ran out before this part could be sent")
                return await self._send(spec, self._new_call(left, budget))

        if len(plan.specs) == 1:
            return plan.merge([await one(plan.specs[0])])
        tasks = [asyncio.ensure_future(one(spec)) for spec in plan.specs]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            return plan.merge([task.result() for task in tasks])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, spec: RequestSpec[Any], deadline_s: float | None = None) -> Any:
        return await self._run(Plan([spec], lambda answers: answers[0]), deadline_s)

    # -- service information ----------------------------------------------------------------------

    async def model_info(self, *, refresh: bool = False) -> ModelInfo:
        """`GET /v1/model`: name, revision, objectives and limits (cached; `refresh=True` asks again)."""
        if self._info is None or refresh:
            self._info = await self._one(RequestSpec("GET", "/v1/model", None, ModelInfo))
        return self._info

    async def objectives(self) -> list[str]:
        return (await self.model_info()).objectives

    async def is_ready(self) -> bool:
        """True when at least one replica answers `GET /health/ready` with 200 (one try each)."""
        for replica in self.pool.replicas:
            headers = {"Host": replica.host_header} if replica.host_header else {}
            try:
                response = await self._http.get(replica.url + "/health/ready", headers=headers, timeout=2.0)
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                return True
        return False

    async def wait_until_ready(self, timeout_s: float = 300.0, *, poll_interval_s: float = 0.5) -> ModelInfo:
        """Wait until a replica is ready (for trainers started before the service); return its model info."""
        give_up = time.monotonic() + timeout_s
        while True:
            if await self.is_ready():
                try:
                    return await self.model_info(refresh=True)
                except Unauthorized:
                    raise
                except RewardServiceError:
                    pass
            if time.monotonic() + poll_interval_s > give_up:
                raise Timeout(
                    f"no replica of {self.urls} became ready within {timeout_s} s; is the service started?"
                )
            await asyncio.sleep(poll_interval_s)

    # -- scoring ----------------------------------------------------------------------------------

    async def score(
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
        return await self._run(self._plan_score(request, await self.model_info()), deadline_s)

    async def score_pairs(
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
        return await self.score(
            items, weights=weights, direction=direction, truncation=truncation, deadline_s=deadline_s
        )

    async def score_groups(
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
        return (await self._run(self._plan_score(request, await self.model_info()), deadline_s)).groups

    async def get_reward(
        self, queries: Sequence[str], *, deadline_s: float | None = None
    ) -> GetRewardResponse:
        """OpenRLHF's `/get_reward`: full chat-templated texts in, gated scores and per-objective logs out."""
        return await self._run(self._plan_get_reward(queries, await self.model_info()), deadline_s)

    # -- objectives maths and judges --------------------------------------------------------------

    async def pama_weights(
        self,
        advantages: Any,
        *,
        noon: bool = False,
        ratios: Any = None,
        clip_eps: float = 0.2,
        deadline_s: float | None = None,
    ) -> PamaResponse:
        """PAMA combination of per-objective advantages (`[..., n]` nested lists, arrays or tensors)."""
        return await self._one(self._pama_spec(advantages, noon, ratios, clip_eps), deadline_s)

    async def judges(self) -> list[JudgeInfo]:
        """`GET /v1/judges`: the rule judges the service offers, with their argument schemas."""
        return (await self._one(RequestSpec("GET", "/v1/judges", None, JudgeListResponse))).judges

    async def judge(
        self, items: Sequence[JudgeItem | Mapping[str, Any]], *, deadline_s: float | None = None
    ) -> list[JudgeItemResult]:
        """Run rule judges on (prompt, response) pairs; `all_passed` is CGPO's feasibility."""
        return await self._run(self._plan_judge(items, await self.model_info()), deadline_s)


__all__ = ["AsyncRewardClient"]
