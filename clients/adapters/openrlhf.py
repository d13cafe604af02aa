"""OpenRLHF adapter: the service's `/get_reward` as OpenRLHF expects it, in both of OpenRLHF's modes.

1. Remote mode, nothing to install on the trainer side: OpenRLHF POSTs `{"query", "prompts", "labels"}`
   to the URL it is given, as is, so pass the full route:

       --remote_rm_url http://rm-host:8000/get_reward

   The service answers `{"rewards", "scores", "extra_logs"}`: `rewards` and `scores` are the gated score,
   `extra_logs` holds one list per objective (logged to wandb by OpenRLHF). Queries are the full
   chat-templated texts OpenRLHF decodes from the policy tokens. Several comma-separated URLs are sharded
   by OpenRLHF itself with no retry policy; with per-sample calls every URL after the first receives an
   empty list (the service answers empty lists), so for several replicas prefer mode 2.

2. Local-function mode, with retries, deadlines, replica failover and API keys (this package):

       PARETORM_URL=http://rm-a:8000,http://rm-b:8000 PARETORM_API_KEY=... \\
       python -m openrlhf.cli.train_ppo_ray ... --remote_rm_url $(python -m clients.adapters.openrlhf)

   `python -m clients.adapters.openrlhf` prints the path of `openrlhf_reward_func.py`, whose
   `reward_func(queries, prompts, labels, **kwargs)` calls the service through `RewardClient`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.adapters._shared import shared_client
from clients.client import RewardClient

REWARD_FUNC_FILE = Path(__file__).with_name("openrlhf_reward_func.py")
"""The file to pass to OpenRLHF's `--remote_rm_url` (local-function mode)."""


def openrlhf_rewards(
    client: RewardClient, queries: Sequence[str], *, deadline_s: float | None = None
) -> dict[str, Any]:
    """`{"rewards", "scores", "extra_logs"}` for OpenRLHF from the service's `/get_reward` (split as needed).

    Lists, exactly as OpenRLHF's own remote mode receives them over HTTP, so both modes behave alike.
    """
    answer = client.get_reward(list(queries), deadline_s=deadline_s)
    return {"rewards": answer.rewards, "scores": answer.scores, "extra_logs": answer.extra_logs}


def client_from_env() -> RewardClient:
    """The process-wide client configured by `PARETORM_URL` and `PARETORM_API_KEY` (and optional timing)."""
    options: dict[str, Any] = {}
    if os.environ.get("PARETORM_DEADLINE_S"):
        options["deadline_s"] = float(os.environ["PARETORM_DEADLINE_S"])
    return shared_client(None, None, options)


if __name__ == "__main__":
    print(REWARD_FUNC_FILE)  # noqa: T201 - the command's output is the path
