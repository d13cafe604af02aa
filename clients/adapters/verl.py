"""veRL adapter: a `compute_score` that returns every objective plus the aggregate, for GDPO.

veRL's reward managers call `compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)`
per sample; a dict result must carry a scalar `"score"` (the reward used) and every other key becomes
`reward_extra_info`, which veRL's multi-reward normalisation (`algorithm.adv_estimator=gdpo` with
`gdpo_reward_keys`) reads per key. So we return

    {"score": <gated score, or w . rewards when weights are given>, "<objective>": reward, ...}

Configuration in veRL's YAML:

    reward:
      custom_reward_function:
        path: <site-packages>/clients/adapters/verl.py
        name: compute_score              # or compute_score_async, or compute_score_batch
        reward_kwargs: {url: "http://rm:8000"}
    algorithm: {adv_estimator: gdpo, gdpo_reward_keys: [helpsteer-helpfulness, helpsteer-verbosity]}

veRL passes only the response text, so the prompt must come from the sample's `extra_info`: the first of
`prompt_keys` present (default `prompt`, `question`, `raw_prompt`; text or chat messages). Put it there in
your dataset preprocessing. `client_options` (e.g. `deadline_s`) go to the `RewardClient`; one client per
process and configuration is reused across calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from clients.adapters._shared import messages, shared_client
from clients.async_client import AsyncRewardClient
from clients.errors import BadRequest
from clients.protocol import ObjectiveWeights
from clients.results import ScoredItem

DEFAULT_PROMPT_KEYS = ("prompt", "question", "raw_prompt")
_async_clients: dict[tuple[int, Any], AsyncRewardClient] = {}


def prompt_from(
    extra_info: Mapping[str, Any] | None, prompt_keys: Sequence[str] = DEFAULT_PROMPT_KEYS
) -> Any:
    """The prompt of a veRL sample (text or messages), from its `extra_info`."""
    for key in prompt_keys:
        if extra_info and extra_info.get(key) is not None:
            value = extra_info[key]
            return value if isinstance(value, str) else messages(value)
    raise BadRequest(
        f"no prompt in extra_info (looked for {list(prompt_keys)}; found keys {sorted(extra_info or {})}): "
        "veRL gives reward functions only the response, so add the prompt to extra_info in preprocessing "
        "or pass reward_kwargs={prompt_keys: [your_key]}"
    )


def verl_result(item: ScoredItem, use_weighted: bool) -> dict[str, float]:
    """`{"score": aggregate, objective: reward, ...}`: the dict veRL's GDPO path consumes."""
    aggregate = item.weighted if use_weighted and item.weighted is not None else item.score
    return {"score": float(aggregate), **dict(item.rewards)}


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    weights: ObjectiveWeights | None = None,
    prompt_keys: Sequence[str] = DEFAULT_PROMPT_KEYS,
    client_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """veRL per-sample reward: per-objective rewards and the aggregate `score` (sync; thread-safe)."""
    client = shared_client(url, api_key, client_options or {})
    batch = client.score([(prompt_from(extra_info, prompt_keys), solution_str)], weights=weights)
    return verl_result(batch[0], weights is not None)


async def compute_score_async(
    data_source: Any,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    weights: ObjectiveWeights | None = None,
    prompt_keys: Sequence[str] = DEFAULT_PROMPT_KEYS,
    client_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """The same as `compute_score`, as a coroutine (veRL's reward loop awaits coroutine functions)."""
    loop = asyncio.get_running_loop()
    options = tuple(sorted((k, repr(v)) for k, v in (client_options or {}).items()))
    key = (id(loop), (tuple(url) if isinstance(url, (list, tuple)) else url, api_key, options))
    client = _async_clients.get(key)
    if client is None:  # an AsyncClient belongs to one event loop
        client = _async_clients[key] = AsyncRewardClient(url, api_key=api_key, **dict(client_options or {}))
    batch = await client.score([(prompt_from(extra_info, prompt_keys), solution_str)], weights=weights)
    return verl_result(batch[0], weights is not None)


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None],
    *,
    url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    weights: ObjectiveWeights | None = None,
    prompt_keys: Sequence[str] = DEFAULT_PROMPT_KEYS,
    client_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """veRL batch reward manager form: one (split, concurrent) call for the whole batch, results in order."""
    client = shared_client(url, api_key, client_options or {})
    pairs = [
        (prompt_from(info, prompt_keys), text) for info, text in zip(extra_infos, solution_strs, strict=True)
    ]
    batch = client.score(pairs, weights=weights)
    return [verl_result(item, weights is not None) for item in batch]


__all__ = ["compute_score", "compute_score_async", "compute_score_batch", "prompt_from", "verl_result"]
