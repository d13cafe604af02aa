"""Splitting plan: cut a large input into requests that fit the server's limits, and merge the answers.

The server advertises `max_items_per_request` and `max_body_bytes` in `GET /v1/model`. A score request
counts one per item and one per group response, so a group larger than the limit is cut into pieces that
share the prompt (each piece pays the prompt once on the server, which still beats sending items). The
packer is greedy and keeps input order, so pieces of one group stay adjacent and merging is a
concatenation. Body sizes are measured on the exact JSON the client will send, so a plan never produces
a 413 unless a single conversation is larger than the limit, which is reported before anything is sent.

When several replicas are free, one request that would fit is still cut into `min_chunks` pieces so all
replicas work on it at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.errors import BadRequest, RewardServiceError
from clients.protocol import GetRewardRequest, GetRewardResponse, GroupScores, ScoreRequest, ScoreResponse

_COMMA = 1


def json_size(value: Any) -> int:
    """Bytes of `value` as the client serialises it (compact JSON, UTF-8)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def dump_request(request: ScoreRequest | GetRewardRequest) -> dict[str, Any]:
    """The JSON body sent for a request (unset optional fields are left out)."""
    return request.model_dump(mode="json", exclude_none=True)


@dataclass
class ScoreChunk:
    """One request of a plan and where its answers go back in the caller's input."""

    request: ScoreRequest
    item_slots: list[int] = field(default_factory=list)
    group_slots: list[int] = field(default_factory=list)


@dataclass
class _Builder:
    template: ScoreRequest
    max_items: int
    max_bytes: int
    envelope: int
    items: list[Any] = field(default_factory=list)
    groups: list[Any] = field(default_factory=list)
    chunk: ScoreChunk = field(init=False)
    count: int = 0
    size: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.items, self.groups, self.count, self.size = [], [], 0, self.envelope
        self.chunk = ScoreChunk(self.template)

    def fits(self, extra_bytes: int, extra_count: int = 1) -> bool:
        return self.count + extra_count <= self.max_items and self.size + extra_bytes <= self.max_bytes

    def build(self) -> ScoreChunk | None:
        if self.count == 0:
            return None
        request = self.template.model_copy(update={"items": self.items, "groups": self.groups})
        chunk = ScoreChunk(request, self.chunk.item_slots, self.chunk.group_slots)
        self.reset()
        return chunk


def _too_large(what: str, size: int, max_bytes: int, cost: int = 1) -> BadRequest:
    if size <= max_bytes:  # it is the count that does not fit: an item and its baseline, limit 1
        message = (f"{what} with its CGPO baseline is {cost} conversations, over the server's "
                   "max_items_per_request; raise the service's --max-items-per-request")
    else:
        message = (f"{what} alone is {size} bytes of JSON, over the server's max_body_bytes ({max_bytes}); "
                   "shorten it or raise the service's --max-body-bytes")
    return BadRequest(message, status_code=413, error_type="payload_too_large")


def plan_score(
    request: ScoreRequest, max_items: int, max_bytes: int, min_chunks: int = 1
) -> list[ScoreChunk]:
    """Cut `request` into chunks within `max_items` conversations and `max_bytes` of JSON each."""
    total = request.num_conversations()
    if total == 0:
        return [ScoreChunk(request)]
    per_chunk = max(1, min(max_items, math.ceil(total / max(1, min_chunks))))
    template = request.model_copy(update={"items": [], "groups": []})
    builder = _Builder(template, per_chunk, max_bytes, json_size(dump_request(template)))
    chunks: list[ScoreChunk] = []

    def flush() -> None:
        built = builder.build()
        if built is not None:
            chunks.append(built)

    for index, item in enumerate(request.items):
        size = json_size(item.model_dump(mode="json", exclude_none=True)) + _COMMA
        cost = 2 if item.baseline is not None else 1  # a CGPO baseline is one more forward
        if not builder.fits(size, cost):
            flush()
            if not builder.fits(size, cost):
                raise _too_large(f"item {index}", size, max_bytes, cost)
        builder.items.append(item)
        builder.chunk.item_slots.append(index)
        builder.count += cost
        builder.size += size

    for index, group in enumerate(request.groups):
        header = group.model_copy(update={"responses": []})
        header_size = json_size(header.model_dump(mode="json", exclude_none=True)) + _COMMA
        open_piece: Any = None
        baseline_cost = 1 if group.baseline is not None else 0  # every piece of the group carries it
        for position, response in enumerate(group.responses):
            size = json_size(response) + _COMMA
            need, cost = (size, 1) if open_piece is not None else (size + header_size, 1 + baseline_cost)
            if not builder.fits(need, cost):
                flush()
                open_piece = None
                need, cost = size + header_size, 1 + baseline_cost
                if not builder.fits(need, cost):
                    where = f"response {position} of group {index} with its prompt"
                    raise _too_large(where, need, max_bytes, cost)
            if open_piece is None:
                open_piece = header.model_copy(update={"responses": []})
                builder.groups.append(open_piece)
                builder.chunk.group_slots.append(index)
            open_piece.responses.append(response)
            builder.count += cost
            builder.size += need
    flush()
    return chunks


def _mismatch(what: str, got: int, sent: int) -> RewardServiceError:
    return RewardServiceError(
        f"the service answered {got} {what} for {sent} sent: client and service disagree on the protocol "
        "(upgrade the older of the two)",
        error_type="protocol_mismatch",
    )


def merge_score(
    request: ScoreRequest, chunks: Sequence[ScoreChunk], answers: Sequence[ScoreResponse]
) -> ScoreResponse:
    """Put every chunk's answers back at their input positions; check nothing is missing or extra."""
    items: list[Any] = [None] * len(request.items)
    groups = [GroupScores(results=[]) for _ in request.groups]
    first = answers[0]
    for chunk, answer in zip(chunks, answers, strict=True):
        if answer.objectives != first.objectives or answer.revision != first.revision:
            raise RewardServiceError(
                f"replicas serve different models ({first.revision} vs {answer.revision}): rewards from "
                "different revisions are not comparable; roll every replica to the same checkpoint",
                error_type="revision_mismatch",
            )
        if len(answer.results) != len(chunk.item_slots):
            raise _mismatch("items", len(answer.results), len(chunk.item_slots))
        if len(answer.groups) != len(chunk.group_slots):
            raise _mismatch("groups", len(answer.groups), len(chunk.group_slots))
        for slot, result in zip(chunk.item_slots, answer.results, strict=True):
            items[slot] = result
        for slot, piece, sent in zip(chunk.group_slots, answer.groups, chunk.request.groups, strict=True):
            if len(piece.results) != len(sent.responses):
                raise _mismatch("group responses", len(piece.results), len(sent.responses))
            groups[slot].results.extend(piece.results)
            if groups[slot].baseline_score is None:
                groups[slot].baseline_score = piece.baseline_score
    return ScoreResponse(
        model=first.model, revision=first.revision, objectives=first.objectives, results=items, groups=groups
    )


def plan_list(
    values: Sequence[Any], max_items: int, max_bytes: int, envelope: int, min_chunks: int = 1
) -> list[list[Any]]:
    """Greedy in-order cut of a flat list (get_reward queries, judge items) within count and bytes."""
    if not values:
        return [[]]
    per_chunk = max(1, min(max_items, math.ceil(len(values) / max(1, min_chunks))))
    chunks: list[list[Any]] = []
    current: list[Any] = []
    size = envelope
    for index, value in enumerate(values):
        raw = value.model_dump(mode="json", exclude_none=True) if hasattr(value, "model_dump") else value
        need = json_size(raw) + _COMMA
        if current and (len(current) + 1 > per_chunk or size + need > max_bytes):
            chunks.append(current)
            current, size = [], envelope
        if size + need > max_bytes:
            raise _too_large(f"entry {index}", need, max_bytes)
        current.append(value)
        size += need
    chunks.append(current)
    return chunks


def merge_get_reward(answers: Sequence[GetRewardResponse], sizes: Sequence[int]) -> GetRewardResponse:
    """Concatenate `/get_reward` answers in order; `extra_logs` lists are concatenated per key."""
    rewards: list[float] = []
    scores: list[float] = []
    logs: dict[str, list[float]] = {}
    for answer, sent in zip(answers, sizes, strict=True):
        if len(answer.rewards) != sent:
            raise _mismatch("rewards", len(answer.rewards), sent)
        rewards.extend(answer.rewards)
        scores.extend(answer.scores)
        for key, values in answer.extra_logs.items():
            logs.setdefault(key, []).extend(values)
    return GetRewardResponse(rewards=rewards, scores=scores, extra_logs=logs)
