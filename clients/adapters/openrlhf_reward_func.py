"""OpenRLHF local reward function backed by the paretorm service.

Give this file's path to OpenRLHF (`--remote_rm_url /path/to/openrlhf_reward_func.py`; print the path with
`python -m clients.adapters.openrlhf`). OpenRLHF loads it by path and calls
`reward_func(queries, prompts, labels)` from a worker thread; we call the service's `/get_reward` with
the full texts, through one process-wide `RewardClient`: retries, deadline, replica failover.

Configuration (environment, read on first call):
    PARETORM_URL        one URL, or several comma-separated replicas (required)
    PARETORM_API_KEY    bearer key, if the service wants one
    PARETORM_DEADLINE_S total seconds per call, retries included (default 300)

Returns `{"rewards": [...], "scores": [...], "extra_logs": {objective: [...]}}` as lists: OpenRLHF's remote
HTTP mode hands the same lists on, so per-objective rewards appear in its logs either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clients.adapters.openrlhf import client_from_env, openrlhf_rewards


def reward_func(
    queries: Sequence[str], prompts: Sequence[Any], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    """Gated scores as rewards and per-objective rewards as `extra_logs` for OpenRLHF's `queries`."""
    return openrlhf_rewards(client_from_env(), queries)
