"""`BaseRewardClient`: the state and request planning that `RewardClient` and `AsyncRewardClient` share.

Each public method of the two clients is three steps: get the model info (limits), ask this base for
a list of `RequestSpec`s plus a merge function, send the specs (concurrently) and merge. Only the
sending differs between the twins, as in httpx's `BaseClient`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from clients._base import (
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT,
    Call,
    RetryPolicy,
    check_wire_values,
    coerce_group,
    coerce_item,
    coerce_prompt,
    make_headers,
    resolve_api_key,
    resolve_urls,
)
from clients._plan import dump_request, json_size, merge_get_reward, merge_score, plan_list, plan_score
from clients._pool import ReplicaPool
from clients.errors import BadRequest
from clients.protocol import (
    GetRewardRequest,
    GetRewardResponse,
    JudgeItem,
    JudgeItemResult,
    JudgeRequest,
    JudgeResponse,
    ModelInfo,
    ObjectiveWeights,
    PamaRequest,
    PamaResponse,
    ScoreGroup,
    ScoreItem,
    ScoreRequest,
    ScoreResponse,
    Truncation,
)
from clients.results import ScoreBatch

T = TypeVar("T")
R = TypeVar("R")

ItemLike = ScoreItem | Mapping[str, Any] | tuple[Any, str]
GroupLike = ScoreGroup | Mapping[str, Any]


@dataclass(frozen=True)
class RequestSpec(Generic[T]):
    """One HTTP request of a call: `method path`, the JSON body, and the protocol model of the answer."""

    method: str
    path: str
    body: Any
    model: type[BaseModel]


@dataclass(frozen=True)
class Plan(Generic[R]):
    specs: list[RequestSpec[Any]]
    merge: Callable[[list[Any]], R]


class BaseRewardClient:
    """Configuration and planning shared by the sync and async clients (no I/O)."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        retry: RetryPolicy | None = None,
        concurrency: int = 8,
        failures_before_out: int = 2,
        cooldown_s: float = 10.0,
        discover: bool = False,
        headers: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive or None (no deadline), got {deadline_s}")
        self.urls = resolve_urls(url)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.deadline_s = deadline_s
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.pool = ReplicaPool(
            self.urls, failures_before_out=failures_before_out, cooldown_s=cooldown_s, discover=discover
        )
        self._headers = make_headers(resolve_api_key(api_key), headers)
        self._rng = random.Random(seed)
        self._info: ModelInfo | None = None

    # -- attempts ---------------------------------------------------------------------------------

    def _new_call(self, deadline_s: float | None, budget_s: float | None = None) -> Call:
        return Call(
            budget_s=budget_s,
            pool=self.pool,
            policy=self.retry,
            timeout=self.timeout,
            deadline_s=self.deadline_s if deadline_s is None else deadline_s,
            base_headers=self._headers,
            rng=self._rng,
        )

    def _min_chunks(self) -> int:
        return len(self.pool.replicas)

    # -- planning ---------------------------------------------------------------------------------

    def _score_request(
        self,
        items: Sequence[ItemLike] = (),
        groups: Sequence[GroupLike] = (),
        *,
        weights: ObjectiveWeights | None = None,
        direction: ObjectiveWeights | None = None,
        truncation: Truncation | None = None,
    ) -> ScoreRequest:
        if isinstance(items, (str, bytes)) or isinstance(groups, (str, bytes)):
            raise TypeError("items and groups are sequences of items / groups, not a string")
        with invalid_input("score request"):
            return ScoreRequest(
                items=[coerce_item(i) for i in items],
                groups=[coerce_group(g) for g in groups],
                weights=weights,
                direction=direction,
                truncation=truncation,
            )

    @staticmethod
    def _pairs(
        prompts: Sequence[Any], responses: Sequence[str], baselines: Sequence[str] | None
    ) -> list[ScoreItem]:
        with invalid_input("pairs"):  # e.g. None for a list: no len()
            if len(prompts) != len(responses):
                raise BadRequest(
                    f"{len(prompts)} prompts but {len(responses)} responses: give one prompt per response"
                )
            if baselines is not None and len(baselines) != len(responses):
                raise BadRequest(
                    f"{len(baselines)} baselines for {len(responses)} responses: give one per response"
                )
            pairs = list(enumerate(zip(prompts, responses, strict=True)))
        items = []
        for i, (prompt, response) in pairs:
            with invalid_input(f"pair {i}"):
                baseline = baselines[i] if baselines is not None else None
                items.append(ScoreItem(prompt=coerce_prompt(prompt), response=response, baseline=baseline))
        return items

    def _plan_score(self, request: ScoreRequest, info: ModelInfo) -> Plan[ScoreBatch]:
        limits = info.limits
        # Python-mode dump (the JSON one turns NaN into null), before cutting (paths use the caller's indices)
        check_wire_values(request.model_dump(exclude_none=True))
        chunks = plan_score(request, limits.max_items_per_request, limits.max_body_bytes, self._min_chunks())
        specs: list[RequestSpec[Any]] = [
            RequestSpec("POST", "/v1/score", dump_request(c.request), ScoreResponse) for c in chunks
        ]

        def merge(answers: list[Any]) -> ScoreBatch:
            return ScoreBatch.from_wire(merge_score(request, chunks, answers))

        return Plan(specs, merge)

    def _plan_get_reward(self, queries: Sequence[str], info: ModelInfo) -> Plan[GetRewardResponse]:
        if isinstance(queries, str):
            raise TypeError("queries is a list of texts, not one string")
        with invalid_input("queries"):
            GetRewardRequest(query=list(queries))  # the types, before any splitting
        check_wire_values({"query": list(queries)})
        limits = info.limits
        envelope = json_size({"query": []})
        pieces = plan_list(
            list(queries), limits.max_items_per_request, limits.max_body_bytes, envelope, self._min_chunks()
        )
        specs: list[RequestSpec[Any]] = [
            RequestSpec(
                "POST",
                "/get_reward",
                GetRewardRequest(query=p).model_dump(exclude_none=True),
                GetRewardResponse,
            )
            for p in pieces
        ]
        return Plan(specs, lambda answers: merge_get_reward(answers, [len(p) for p in pieces]))

    def _plan_judge(
        self, items: Sequence[JudgeItem | Mapping[str, Any]], info: ModelInfo
    ) -> Plan[list[JudgeItemResult]]:
        with invalid_input("judge items"):
            parsed = [i if isinstance(i, JudgeItem) else JudgeItem.model_validate(i) for i in items]
        check_wire_values({"items": [item.model_dump() for item in parsed]})
        limits = info.limits
        pieces = plan_list(
            parsed, limits.max_items_per_request, limits.max_body_bytes, json_size({"items": []})
        )
        specs: list[RequestSpec[Any]] = [
            RequestSpec("POST", "/v1/judge", JudgeRequest(items=p).model_dump(mode="json"), JudgeResponse)
            for p in pieces
        ]

        def merge(answers: list[Any]) -> list[JudgeItemResult]:
            out = [r for a in answers for r in a.results]
            if len(out) != len(parsed):
                raise BadRequest(f"the service judged {len(out)} items for {len(parsed)} sent")
            return out

        return Plan(specs, merge)

    @staticmethod
    def _pama_spec(advantages: Any, noon: bool, ratios: Any, clip_eps: float) -> RequestSpec[Any]:
        # Checked before pydantic's JSON dump, which would silently send NaN and Infinity as null.
        check_wire_values({"advantages": _tolist(advantages), "ratios": _tolist(ratios)})
        with invalid_input("PAMA input"):
            request = PamaRequest(
                advantages=_tolist(advantages), noon=noon, ratios=_tolist(ratios), clip_eps=clip_eps
            )
            body = request.model_dump(mode="json", exclude_none=True)
        return RequestSpec("POST", "/v1/pama/weights", body, PamaResponse)


@contextmanager
def invalid_input(what: str) -> Iterator[None]:
    """Input the caller built wrongly becomes `BadRequest` (the client's own error tree), never a raw
    pydantic, `KeyError` or `TypeError` from deep inside request building."""
    try:
        yield
    except BadRequest:
        raise
    except (ValueError, TypeError, KeyError, PydanticSerializationError) as exc:
        detail = str(exc) if not isinstance(exc, KeyError) else f"missing key {exc}"
        raise BadRequest(f"invalid {what}: {detail}", error_type="invalid_request") from exc


def _tolist(value: Any) -> Any:
    """Arrays and tensors become nested lists (without importing numpy or torch)."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


__all__ = ["BaseRewardClient", "Plan", "RequestSpec"]
