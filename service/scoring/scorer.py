"""The scoring service: validates a request, encodes it, batches it, and shapes the answer.

Routes stay thin and call one method here; the batcher and the model below know nothing of the wire
format. Everything a request asks for is encoded and submitted in one go (items, group responses and
CGPO baselines), so a request's conversations can share forward passes with every other client's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from clients.protocol import (
    GetRewardRequest,
    GetRewardResponse,
    GroupScores,
    ItemScore,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)
from service import metrics
from service.engine.batcher import Batcher, SubmitResult
from service.engine.lru import ResultCache
from service.engine.types import EncodedConversation, ScoreRow
from service.errors import InvalidRequest, PayloadTooLarge
from service.objectives.cgpo import calibrated_reward
from service.objectives.directions import Direction, weights_vector
from service.objectives.validation import ObjectiveInputError
from service.scoring.encoding import ChatEncoder, EncodingPolicy, conversation, message_dicts

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timing:
    queue_ms: float
    compute_ms: float
    tokenize_ms: float


@dataclass(frozen=True, slots=True)
class ScoreOutcome:
    response: ScoreResponse
    timing: Timing


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """Where each submitted conversation's row goes back to."""

    conversations: list[list[dict[str, str]]]
    labels: list[str]
    item_rows: list[int]
    item_baseline_rows: list[int | None]
    group_rows: list[list[int]]
    group_baseline_rows: list[int | None]


class Scorer:
    def __init__(
        self, card: ModelInfo, encoder: ChatEncoder, batcher: Batcher, results: ResultCache | None = None
    ) -> None:
        self._card = card
        self._encoder = encoder
        self._batcher = batcher
        self._results = results
        # Templating and tokenisation (seconds for a 16 MB body) stay off the event loop, on one thread:
        # the Rust tokenizer releases the GIL, and one thread keeps its per-call settings
        # (split_special_tokens) from racing between requests.
        self._tokenize_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paretorm-tokenize")

    async def _off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._tokenize_thread, work)

    async def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone (no template), for length judges; computed off the event loop."""
        return [len(ids) for ids in await self._off_loop(lambda: self._encoder.tokenize(texts))]

    @property
    def card(self) -> ModelInfo:
        return self._card

    async def score(self, request: ScoreRequest) -> ScoreOutcome:
        limits = self._card.limits
        if request.num_conversations() > limits.max_items_per_request:
            raise PayloadTooLarge(
                f"the request has {request.num_conversations()} conversations (items, group responses and "
                f"CGPO baselines), over the limit of {limits.max_items_per_request} per request; split it "
                "(the paretorm client does this itself)"
            )
        combine = self._combination(request)
        plan = plan_request(request)
        policy = EncodingPolicy(limits.max_input_tokens, request.truncation or limits.truncation)
        started = time.perf_counter()
        encoded = await self._off_loop(
            lambda: self._encoder.encode_conversations(plan.conversations, policy, labels=plan.labels)
        )
        tokenize_ms = (time.perf_counter() - started) * 1000
        metrics.STAGE_SECONDS.labels(stage="tokenize").observe(tokenize_ms / 1000)
        submitted = await self._submit(encoded)
        rows = submitted.rows
        metrics.observe_rewards(self._card.objectives, [rows[i].rewards for i in plan.item_rows])

        def result(row_index: int, baseline_index: int | None) -> ItemScore:
            baseline = rows[baseline_index].score if baseline_index is not None else None
            return _item_score(rows[row_index], encoded[row_index], combine, baseline)

        response = ScoreResponse(
            model=self._card.name,
            revision=self._card.revision,
            objectives=self._card.objectives,
            results=[result(r, b) for r, b in zip(plan.item_rows, plan.item_baseline_rows, strict=True)],
            groups=[
                GroupScores(
                    results=[result(r, baseline) for r in group_rows],
                    baseline_score=rows[baseline].score if baseline is not None else None,
                )
                for group_rows, baseline in zip(plan.group_rows, plan.group_baseline_rows, strict=True)
            ],
        )
        return ScoreOutcome(response, Timing(submitted.queue_ms, submitted.compute_ms, tokenize_ms))

    async def get_reward(self, request: GetRewardRequest) -> tuple[GetRewardResponse, Timing]:
        limits = self._card.limits
        if len(request.query) > limits.max_items_per_request:
            raise PayloadTooLarge(
                f"`query` has {len(request.query)} texts, over the limit of {limits.max_items_per_request}"
            )
        started = time.perf_counter()
        policy = EncodingPolicy(limits.max_input_tokens, limits.truncation)
        labels = [f"query[{i}]" for i in range(len(request.query))]
        encoded = await self._off_loop(lambda: self._encoder.encode_texts(request.query, policy, labels=labels))
        tokenize_ms = (time.perf_counter() - started) * 1000
        submitted = await self._submit(encoded)
        scores = [row.score for row in submitted.rows]
        extra = {
            name: [float(row.rewards[k]) for row in submitted.rows] for k, name in enumerate(self._card.objectives)
        }
        metrics.observe_rewards(self._card.objectives, [row.rewards for row in submitted.rows])
        response = GetRewardResponse(rewards=scores, scores=list(scores), extra_logs=extra)
        return response, Timing(submitted.queue_ms, submitted.compute_ms, tokenize_ms)

    async def rewards_for(self, items: Sequence[tuple[object, str]]) -> list[dict[str, float]]:
        """Per-objective rewards of (prompt, response) pairs: what reward-threshold judges read."""
        policy = EncodingPolicy(self._card.limits.max_input_tokens, self._card.limits.truncation)
        conversations = [conversation(prompt, response) for prompt, response in items]  # type: ignore[arg-type]
        labels = [f"items[{i}]" for i in range(len(items))]
        encoded = await self._off_loop(
            lambda: self._encoder.encode_conversations(conversations, policy, labels=labels)
        )
        submitted = await self._submit(encoded)
        return [
            {**dict(zip(self._card.objectives, map(float, row.rewards), strict=True)), "score": row.score}
            for row in submitted.rows
        ]

    async def _submit(self, encoded: list[EncodedConversation]) -> SubmitResult:
        """Submit to the batcher, answering exact repeats from the result cache when it is on."""
        if self._results is None:
            return await self._batcher.submit(encoded)
        cached = [self._results.lookup(conversation.input_ids) for conversation in encoded]
        missing = [i for i, row in enumerate(cached) if row is None]
        fresh = await self._batcher.submit([encoded[i] for i in missing])
        for i, row in zip(missing, fresh.rows, strict=True):
            self._results.store(encoded[i].input_ids, row)
            cached[i] = row
        return SubmitResult([row for row in cached if row is not None], fresh.queue_ms, fresh.compute_ms)

    def _combination(self, request: ScoreRequest) -> np.ndarray | None:
        try:
            if request.weights is not None:
                return weights_vector(request.weights, self._card.objectives)
            if request.direction is not None:
                return Direction.parse(request.direction, self._card.objectives).vector
        except ObjectiveInputError as error:
            raise InvalidRequest(str(error)) from None
        return None


def plan_request(request: ScoreRequest) -> RequestPlan:
    conversations: list[list[dict[str, str]]] = []
    labels: list[str] = []

    def add(messages: list[dict[str, str]], label: str) -> int:
        conversations.append(messages)
        labels.append(label)
        return len(conversations) - 1

    item_rows: list[int] = []
    item_baselines: list[int | None] = []
    baseline_rows: dict[str, int] = {}
    for i, item in enumerate(request.items):
        if item.messages is not None:
            item_rows.append(add(message_dicts(item.messages), f"items[{i}]"))
            item_baselines.append(None)
            continue
        assert item.prompt is not None and item.response is not None  # the schema guarantees one form
        item_rows.append(add(conversation(item.prompt, item.response), f"items[{i}]"))
        if item.baseline is None:
            item_baselines.append(None)
            continue
        # Items repeating a (prompt, baseline) pair share one baseline forward.
        baseline_messages = conversation(item.prompt, item.baseline)
        key = json.dumps(baseline_messages)
        if key not in baseline_rows:
            baseline_rows[key] = add(baseline_messages, f"items[{i}].baseline")
        item_baselines.append(baseline_rows[key])
    group_rows: list[list[int]] = []
    group_baselines: list[int | None] = []
    for g, group in enumerate(request.groups):
        group_rows.append(
            [add(conversation(group.prompt, text), f"groups[{g}].responses[{j}]") for j, text in enumerate(group.responses)]
        )
        group_baselines.append(
            add(conversation(group.prompt, group.baseline), f"groups[{g}].baseline") if group.baseline is not None else None
        )
    return RequestPlan(conversations, labels, item_rows, item_baselines, group_rows, group_baselines)


def _item_score(
    row: ScoreRow, encoded: EncodedConversation, combine: np.ndarray | None, baseline_score: float | None
) -> ItemScore:
    return ItemScore(
        rewards=row.rewards.tolist(),
        gating=row.gating.tolist(),
        coefficients=row.coefficients.tolist(),
        score=row.score,
        num_tokens=encoded.num_tokens,
        truncated_tokens=encoded.truncated_tokens,
        weighted=float(combine @ row.rewards) if combine is not None else None,
        calibrated=float(calibrated_reward(row.score, baseline_score)) if baseline_score is not None else None,
    )
