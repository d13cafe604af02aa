"""The HTTP endpoints the benchmark drives, each with the check that its answer has what was asked.

- paretorm `/v1/score` with `items` (one conversation each) or `groups` (one GRPO group each): every
  result must carry K per-objective rewards, K gate weights and the gated score — the service is only
  compared with others while it returns all of that;
- vLLM's `/classify` on chat-templated text (`use_activation: false`: raw head outputs, K per item);
- the naive floor's `/v1/score` (same body as the service; rewards, gating and score per item).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.bench.loadgen import Target
from service.bench.workload import ChatItem, GrpoGroup


def _check_scores(results: Sequence[dict[str, Any]], expected: int, objectives: int, what: str) -> None:
    if len(results) != expected:
        raise ValueError(f"{what}: {len(results)} results for {expected} items")
    for result in results:
        if len(result["rewards"]) != objectives or len(result["gating"]) != objectives:
            raise ValueError(f"{what}: a result lacks the {objectives} rewards or gate weights")
        float(result["score"])


def paretorm_items(base_url: str, objectives: int, name: str = "paretorm") -> Target:
    def body(items: Sequence[ChatItem]) -> dict[str, Any]:
        return {"items": [{"prompt": item.prompt, "response": item.response} for item in items]}

    def validate(answer: dict[str, Any], expected: int) -> None:
        _check_scores(answer["results"], expected, objectives, name)

    return Target(name, base_url, "/v1/score", body, len, validate)


def paretorm_groups(base_url: str, objectives: int, name: str = "paretorm-groups") -> Target:
    def body(groups: Sequence[GrpoGroup]) -> dict[str, Any]:
        return {"groups": [{"prompt": group.prompt, "responses": list(group.responses)} for group in groups]}

    def count(groups: Sequence[GrpoGroup]) -> int:
        return sum(len(group.responses) for group in groups)

    def validate(answer: dict[str, Any], expected: int) -> None:
        _check_scores([r for group in answer["groups"] for r in group["results"]], expected, objectives, name)

    return Target(name, base_url, "/v1/score", body, count, validate)


def vllm_classify(base_url: str, objectives: int, served_name: str = "rm") -> Target:
    """`texts` are chat-templated already, so `add_special_tokens` is off (the template wrote the BOS)."""

    def body(texts: Sequence[str]) -> dict[str, Any]:
        payload: str | list[str] = texts[0] if len(texts) == 1 else list(texts)
        return {"model": served_name, "input": payload, "add_special_tokens": False, "use_activation": False}

    def validate(answer: dict[str, Any], expected: int) -> None:
        data = answer["data"]
        if len(data) != expected or any(len(row["probs"]) != objectives for row in data):
            raise ValueError(f"vllm: expected {expected} rows of {objectives} outputs")

    return Target("vllm-classify", base_url, "/classify", body, len, validate)
