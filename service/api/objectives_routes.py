"""Routes for combining objectives: PAMA's closed-form weights and CGPO's judges. Thin by design."""

from __future__ import annotations

from fastapi import APIRouter, Request

from clients.protocol import ErrorResponse, JudgeListResponse, JudgeRequest, JudgeResponse, PamaRequest, PamaResponse
from service.api.deps import AUTH, RuntimeDep
from service.api.guard import guarded
from service.api.json_body import CheckedJsonRoute
from service.scoring import judging

ERRORS = {code: {"model": ErrorResponse} for code in (401, 413, 422)}
router = APIRouter(route_class=CheckedJsonRoute, dependencies=AUTH, responses=ERRORS)


@router.post("/v1/pama/weights", response_model=PamaResponse, tags=["objectives"], summary="PAMA closed form")
async def pama_weights(body: PamaRequest) -> PamaResponse:
    """PAMA (Theorem 1): `s*` = 0 projected onto `[min a, max a]` per row, and simplex weights attaining it.

    `advantages` has shape [..., n] with the n objectives in the last axis; `noon` clips at 0 first;
    `ratios` (shape [...]) zero the rows whose PPO ratio exceeds `1 + clip_eps`.
    """
    return judging.pama_weights(body)


@router.get("/v1/judges", response_model=JudgeListResponse, tags=["objectives"], summary="Available judges")
async def list_judges() -> JudgeListResponse:
    return judging.list_judges()


@router.post("/v1/judge", response_model=JudgeResponse, tags=["objectives"], summary="CGPO mixture of judges")
async def judge(request: Request, body: JudgeRequest, runtime: RuntimeDep) -> JudgeResponse:
    """Run rule-based (and reward-threshold) judges on each item; `all_passed` is CGPO's feasibility."""
    return await guarded(request, judging.judge(body, runtime.scorer, runtime.judges))
