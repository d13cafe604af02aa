"""CGPO judges and PAMA weights behind the service: validation, model context, and the wire shapes.

The judges and PAMA are pure functions in `service.objectives`; this module only adapts them to the
wire contract. Reward-threshold judges need the served model's outputs: only items that use one are
scored, in one batched submit, and each judge then reads `JudgeContext.rewards`.
"""

from __future__ import annotations

from typing import Any

from clients.protocol import (
    JudgeInfo,
    JudgeItemResult,
    JudgeListResponse,
    JudgeRequest,
    JudgeResponse,
    JudgeResult,
    PamaRequest,
    PamaResponse,
    Prompt,
)
from service.errors import InvalidRequest, PayloadTooLarge
from service.objectives.judges import JudgeContext, default_registry, evaluate_judges, resolve_specs
from service.objectives.pama import pama_combine
from service.objectives.validation import ObjectiveInputError
from service.scoring.encoding import tokenize_texts
from service.scoring.scorer import Scorer

_MODEL_JUDGES = frozenset({"reward_threshold"})


def prompt_text(prompt: Prompt) -> str:
    """Judges read the prompt as text: the last user message of a message list ([our reading])."""
    if isinstance(prompt, str):
        return prompt
    users = [message.content for message in prompt if message.role == "user"]
    return users[-1] if users else ""


def pama_weights(request: PamaRequest) -> PamaResponse:
    try:
        result = pama_combine(request.advantages, noon=request.noon, ratios=request.ratios, clip_eps=request.clip_eps)
    except ObjectiveInputError as error:
        raise InvalidRequest(str(error)) from None
    return PamaResponse(combined=result.combined.tolist(), weights=result.weights.tolist())


def list_judges() -> JudgeListResponse:
    return JudgeListResponse(
        judges=[JudgeInfo(name=j.name, description=j.description, args_schema=dict(j.args_schema))
                for j in default_registry()]
    )


async def judge(request: JudgeRequest, scorer: Scorer, tokenizer: Any) -> JudgeResponse:
    limit = scorer.card.limits.max_items_per_request
    if len(request.items) > limit:
        raise PayloadTooLarge(f"{len(request.items)} items, over the limit of {limit} per request; split it")
    registry = default_registry()
    for i, item in enumerate(request.items):
        try:
            resolve_specs([spec.model_dump() for spec in item.judges], registry)
        except ObjectiveInputError as error:
            raise InvalidRequest(f"items[{i}].{error}") from None
    needs_model = [i for i, item in enumerate(request.items) if any(s.name in _MODEL_JUDGES for s in item.judges)]
    rewards: dict[int, dict[str, float]] = {}
    if needs_model:
        scored = await scorer.rewards_for([(request.items[i].prompt, request.items[i].response) for i in needs_model])
        rewards = dict(zip(needs_model, scored, strict=True))
    lengths = tokenize_texts(tokenizer, [item.response for item in request.items])
    results = []
    for i, item in enumerate(request.items):
        context = JudgeContext(rewards=rewards.get(i), token_count=len(lengths[i]))
        try:
            report = evaluate_judges(prompt_text(item.prompt), item.response,
                                     [spec.model_dump() for spec in item.judges], context, registry)
        except ObjectiveInputError as error:
            raise InvalidRequest(f"items[{i}].{error}") from None
        results.append(JudgeItemResult(
            results=[JudgeResult(name=r.name, passed=r.passed, reason=r.reason) for r in report.results],
            all_passed=report.all_passed,
        ))
    return JudgeResponse(results=results)
