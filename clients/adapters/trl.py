"""TRL adapter: one HTTP call per batch, fanned out into one reward function per objective.

TRL's `GRPOTrainer` (and RLOO, Online DPO) take `reward_funcs` as plain callables
`f(prompts, completions, completion_ids=..., **dataset_columns_and_trainer_kwargs) -> list[float]` and log
`rewards/{f.__name__}/mean` per function; `reward_weights` has one weight per function. So

    from clients.adapters.trl import paretorm_reward_funcs
    funcs = paretorm_reward_funcs("http://rm:8000", objectives=["helpsteer-helpfulness", "code-complexity"])
    GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=[1.0, -0.5], ...))

gives one function per objective (names `paretorm_<objective>`) plus, by default, the gated score
(`paretorm_score`). All functions of one factory share a `BatchScorer`: the first one called for a
batch makes the HTTP call, the others read its cached answer, so N objectives cost one request.

Inputs are TRL's: prompts and completions as lists of str, or (conversational datasets) lists of message
lists. Consecutive equal prompts (a GRPO group: TRL repeats each prompt `num_generations` times in a row)
are sent as one `ScoreGroup`, so the server templates and runs each prompt once.

The functions are picklable (for TRL's async workers and multiprocessing): pickling keeps the
configuration and drops the HTTP client and cache, which are rebuilt lazily in the new process; a list
of functions pickled together still shares one scorer.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from clients.adapters._shared import content_text, messages, shared_client
from clients.client import RewardClient
from clients.protocol import ObjectiveWeights, ScoreGroup, ScoreItem
from clients.results import ScoredItem

Completion = str | Sequence[Mapping[str, Any]]


def _to_units(
    prompts: Sequence[Any], completions: Sequence[Completion]
) -> tuple[list[ScoreItem], list[ScoreGroup], list[tuple[str, int, int]]]:
    """Wire items and groups for TRL's inputs, and where input j lands: ("item", i, 0) or ("group", g, k)."""
    if len(prompts) != len(completions):
        raise ValueError(
            f"TRL passed {len(prompts)} prompts and {len(completions)} completions; they must match"
        )
    items: list[ScoreItem] = []
    groups: list[ScoreGroup] = []
    where: list[tuple[str, int, int]] = []
    previous_key: str | None = None
    for prompt, completion in zip(prompts, completions, strict=True):
        wire_prompt: Any = prompt if isinstance(prompt, str) else messages(prompt)
        if isinstance(completion, str):
            response: str | None = completion
        elif all(m.get("role") == "assistant" for m in completion):
            response = "".join(content_text(m.get("content")) for m in completion)
        else:  # tool turns inside the completion: score the whole conversation
            response = None
        if response is None:
            prompt_messages = (
                [{"role": "user", "content": prompt}] if isinstance(prompt, str) else wire_prompt
            )
            items.append(ScoreItem(messages=prompt_messages + messages(completion)))  # type: ignore[arg-type]
            where.append(("item", len(items) - 1, 0))
            previous_key = None
            continue
        key = json.dumps(wire_prompt, sort_keys=True)
        if key == previous_key:
            groups[-1].responses.append(response)
            where.append(("group", len(groups) - 1, len(groups[-1].responses) - 1))
        else:
            groups.append(ScoreGroup(prompt=wire_prompt, responses=[response]))
            where.append(("group", len(groups) - 1, 0))
        previous_key = key
    return items, groups, where


class BatchScorer:
    """Scores one TRL batch once and serves it to every reward function of the same factory."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        weights: ObjectiveWeights | None = None,
        cache_batches: int = 4,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = list(url) if isinstance(url, (list, tuple)) else url
        self.api_key = api_key
        self.weights = weights
        self.cache_batches = cache_batches
        self.client_options = dict(client_options or {})
        self._setup()

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, list[ScoredItem]] = OrderedDict()
        self._client: RewardClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_cache", "_client")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    @property
    def client(self) -> RewardClient:
        if self._client is None:
            self._client = shared_client(self.url, self.api_key, self.client_options)
        return self._client

    def score(self, prompts: Sequence[Any], completions: Sequence[Completion]) -> list[ScoredItem]:
        """Per-input scores, from the cache when another function already asked for this batch."""
        key = hashlib.sha256(
            json.dumps([prompts, completions], sort_keys=True, default=str).encode()
        ).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            items, groups, where = _to_units(prompts, completions)
            batch = self.client.score(items, groups=groups, weights=self.weights)
            scored = [batch[i] if kind == "item" else batch.groups[i][k] for kind, i, k in where]
            self._cache[key] = scored
            while len(self._cache) > self.cache_batches:
                self._cache.popitem(last=False)
            return scored


class PareToRMRewardFunc:
    """One TRL reward function: an objective's reward, the gated `score`, or the `weighted` sum."""

    def __init__(self, scorer: BatchScorer, objective: str | None = None, *, field: str = "reward") -> None:
        if field not in ("reward", "score", "weighted", "calibrated"):
            raise ValueError(f"field must be reward, score, weighted or calibrated; got {field!r}")
        if field == "reward" and not objective:
            raise ValueError("a per-objective reward function needs the objective's name")
        self.scorer = scorer
        self.objective = objective
        self.field = field
        self.__name__ = f"paretorm_{objective}" if field == "reward" else f"paretorm_{field}"

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Completion],
        completion_ids: Any = None,
        **kwargs: Any,
    ) -> list[float | None]:
        scored = self.scorer.score(prompts, completions)
        if self.field == "reward":
            return [s.rewards[self.objective] for s in scored]  # type: ignore[index]
        return [getattr(s, self.field) for s in scored]

    def __repr__(self) -> str:
        return f"PareToRMRewardFunc({self.__name__})"


def paretorm_reward_funcs(
    url: str | Sequence[str] | None = None,
    *,
    objectives: Sequence[str] | None = None,
    include_score: bool = True,
    weights: ObjectiveWeights | None = None,
    api_key: str | None = None,
    wait_until_ready_s: float | None = None,
    **client_options: Any,
) -> list[PareToRMRewardFunc]:
    """TRL reward functions sharing one HTTP call per batch: one per objective, then the gated score.

    `objectives=None` asks the service for its objectives (waiting up to `wait_until_ready_s` when given).
    With `weights`, a `paretorm_weighted` function (`w . rewards`, computed server-side) is appended too.
    """
    scorer = BatchScorer(url, api_key=api_key, weights=weights, client_options=client_options)
    if objectives is None:
        if wait_until_ready_s is not None:
            scorer.client.wait_until_ready(wait_until_ready_s)
        objectives = scorer.client.model_info().objectives
    funcs = [PareToRMRewardFunc(scorer, name) for name in objectives]
    if include_score:
        funcs.append(PareToRMRewardFunc(scorer, field="score"))
    if weights is not None:
        funcs.append(PareToRMRewardFunc(scorer, field="weighted"))
    return funcs


def paretorm_score_func(
    url: str | Sequence[str] | None = None, *, api_key: str | None = None, **client_options: Any
) -> PareToRMRewardFunc:
    """The gated score alone, as one TRL reward function."""
    return PareToRMRewardFunc(BatchScorer(url, api_key=api_key, client_options=client_options), field="score")


__all__ = ["BatchScorer", "PareToRMRewardFunc", "paretorm_reward_funcs", "paretorm_score_func"]
