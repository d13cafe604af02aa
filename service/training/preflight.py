"""Checks of a run's flags against the reward service and the disk, before torch or the policy load.

A ``--policy`` that is not a model directory, or a flag naming an objective, judge or task that the service
(or ``--rule-reward``) does not have, used to stop the run only once torch (and, for a flag, the policy, its
reference and the rollout engine) had loaded: seconds for a 135M policy on a CPU, minutes for an 8B one on
a GPU, and for GRPO's ``--weights`` only after the first rollout.
`run_training` runs these first, torch-free, so such a run stops in about a second with the same one-line
message. The trainers then trust what was checked here.
"""

from __future__ import annotations

from typing import Any

from clients import RewardClient
from service.training.advantages import objective_weights
from service.training.cgpo_config import CgpoConfig, assign_tasks
from service.training.cgpo_feedback import TaskFeedback
from service.training.config import ConfigError, DpaConfig, GrpoConfig, RunConfig, check_policy
from service.training.data import read_prompts
from service.training.offline_config import ModpoConfig
from service.training.rewards import RewardSource
from service.training.rule_rewards import parse_rules


def preflight(run: RunConfig, cfg: Any) -> None:
    """Raise `ConfigError` (or `RewardStop`) for a flag the rewards cannot serve; waits for the service as the
    trainer would (up to ``--outage-timeout-s``)."""
    check_policy(run.policy)
    if isinstance(cfg, CgpoConfig) and run.reward_url is None:
        raise ConfigError("cgpo needs the reward service: give --reward-url http://host:port")
    client = RewardClient(run.reward_url, api_key=run.api_key) if run.reward_url else None
    source = RewardSource(client, parse_rules(run.rule_rewards), outage_timeout_s=run.outage_timeout_s)
    names = source.names
    if isinstance(cfg, GrpoConfig) and cfg.combine in ("weights", "direction"):
        objective_weights(names, cfg, run.weights)
    if isinstance(cfg, DpaConfig):
        unknown = [name for name in cfg.objectives if name not in names]
        if unknown:
            raise ConfigError(f"--dpa-objectives {unknown} not among the objectives {list(names)}")
    if isinstance(cfg, ModpoConfig):
        unknown = [n for n, w in run.weights.items() if n != cfg.objective and w != 0 and n not in names]
        if unknown:
            raise ConfigError(f"--weights {unknown}: not an objective of the service or a --rule-reward; "
                              f"margins can be any of {list(names)}")  # fmt: skip
    if isinstance(cfg, CgpoConfig) and client is not None:
        service = names[: len(names) - len(source.rules)]
        TaskFeedback(client, service, source._with_outage_retries).validate(cfg.tasks)
        assign_tasks(cfg, read_prompts(run.prompts), "--prompts")
        if run.eval_prompts is not None:
            assign_tasks(cfg, read_prompts(run.eval_prompts), "--eval-prompts")
