"""Scoring routes: parse, delegate to the scorer, return. No logic lives here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from clients.protocol import (
    ErrorResponse,
    GetRewardRequest,
    GetRewardResponse,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)
from service.api.deps import AUTH, RuntimeDep
from service.api.examples import GET_REWARD_EXAMPLES, SCORE_EXAMPLES
from service.api.guard import guarded
from service.api.json_body import CheckedJsonRoute
from service.scoring.scorer import Timing

ERRORS = {code: {"model": ErrorResponse} for code in (401, 413, 422, 429, 503, 504)}
router = APIRouter(route_class=CheckedJsonRoute, dependencies=AUTH, responses=ERRORS)


def _timing_headers(response: Response, timing: Timing) -> None:
    response.headers["X-Queue-Ms"] = f"{timing.queue_ms:.2f}"
    response.headers["X-Compute-Ms"] = f"{timing.compute_ms:.2f}"
    response.headers["X-Tokenize-Ms"] = f"{timing.tokenize_ms:.2f}"


@router.post("/v1/score", response_model=ScoreResponse, tags=["scoring"], summary="Per-objective rewards")
async def score(
    request: Request,
    body: Annotated[ScoreRequest, Body(openapi_examples=SCORE_EXAMPLES)],
    runtime: RuntimeDep,
    response: Response,
) -> ScoreResponse:
    """Score conversations: per-objective rewards, gate weights, coefficients and the gated score.

    Send independent `items`, or `groups` (one prompt, many responses: the prompt is computed once).
    Add `weights` or a DPA `direction` to get `weighted`; add a `baseline` to get CGPO's `calibrated`.
    """
    outcome = await guarded(request, runtime.scorer.score(body))
    _timing_headers(response, outcome.timing)
    return outcome.response


@router.post("/get_reward", response_model=GetRewardResponse, tags=["scoring"], summary="OpenRLHF-compatible")
async def get_reward(
    request: Request,
    body: Annotated[GetRewardRequest, Body(openapi_examples=GET_REWARD_EXAMPLES)],
    runtime: RuntimeDep,
    response: Response,
) -> GetRewardResponse:
    """OpenRLHF's remote reward API: `--remote_rm_url http://host:port/get_reward` works unchanged.

    `query` holds full chat-templated texts; `rewards` (= `scores`) are the gated scores and `extra_logs`
    the per-objective rewards by name.
    """
    result, timing = await guarded(request, runtime.scorer.get_reward(body))
    _timing_headers(response, timing)
    return result


@router.get("/v1/model", response_model=ModelInfo, tags=["model"], summary="The served model and limits")
async def model_info(runtime: RuntimeDep) -> ModelInfo:
    return runtime.card
