"""CGPO judges and PAMA weights behind the service: validation, model context, and the wire shapes.

The judges and PAMA are pure functions in `service.objectives`; this module only adapts them to the
wire contract. Reward-threshold judges need the served model's outputs: only items that use one are
scored, in one batched submit, and each judge then reads `JudgeContext.rewards`. The judging itself runs
in `JudgeWorker`'s child process under a time budget (user regexes and long texts can run for hours).
"""

from __future__ import annotations

import logging

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
from service.errors import InvalidRequest, PayloadTooLarge, ServiceError
from service.objectives.judges import default_registry, resolve_specs
from service.objectives.pama import pama_combine
from service.objectives.validation import ObjectiveInputError
from service.scoring.judge_worker import JudgeWorker
from service.scoring.scorer import Scorer

logger = logging.getLogger(__name__)

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


async def judge(request: JudgeRequest, scorer: Scorer, worker: JudgeWorker) -> JudgeResponse:
    """Validate every spec here (fast, names the item), then judge in the worker process under its budget."""
    limit = scorer.card.limits.max_items_per_request
    if len(request.items) > limit:
        raise PayloadTooLarge(f"{len(request.items)} items, over the limit of {limit} per request; split it")
    registry = default_registry()
    specs = [[spec.model_dump() for spec in item.judges] for item in request.items]
    for i, item_specs in enumerate(specs):
        try:
            resolve_specs(item_specs, registry)
        except ObjectiveInputError as error:
            raise InvalidRequest(f"items[{i}].{error}") from None
    needs_model = [i for i, item in enumerate(request.items) if any(s.name in _MODEL_JUDGES for s in item.judges)]
    rewards: dict[int, dict[str, float]] = {}
    if needs_model:
        scored = await scorer.rewards_for([(request.items[i].prompt, request.items[i].response) for i in needs_model])
        rewards = dict(zip(needs_model, scored, strict=True))
    lengths = await scorer.token_counts([item.response for item in request.items])
    verdicts = await worker.evaluate([
        (prompt_text(item.prompt), item.response, specs[i], rewards.get(i), lengths[i])
        for i, item in enumerate(request.items)
    ])
    results = []
    for i, item_verdicts in enumerate(verdicts):
        if item_verdicts.error is not None:
            raise InvalidRequest(f"items[{i}].{item_verdicts.error}")
        if item_verdicts.crash is not None:
            logger.error("a judge failed on items[%d]: %s", i, item_verdicts.crash)
            raise ServiceError(f"a judge failed on items[{i}] ({item_verdicts.crash.split(':')[0]}); it was logged")
        judged = [JudgeResult(name=name, passed=passed, reason=reason) for name, passed, reason in item_verdicts.results]
        results.append(JudgeItemResult(results=judged, all_passed=all(r.passed for r in judged)))
    return JudgeResponse(results=results)
