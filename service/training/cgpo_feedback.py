"""What the reward service says about one CGPO task's samples: calibrated rewards and the judges' verdicts.

- Scores come from one ``score_groups`` call per task per step. With ``reward: "score"`` each group
  carries its baseline (`ScoreGroup.baseline`), so the baseline costs one forward per prompt and the
  service returns ``calibrated = sigma(score - score(baseline))``. The service calibrates only its gated
  score, so for ``reward: <objective>`` the baseline rides along as the group's last response (still one
  forward per prompt) and ``sigma(r_k(a) - r_k(baseline))`` is computed here with the service's own
  `calibrated_reward`.
- Rule judges run on the service (``/v1/judge``). ``reward_threshold`` judges are evaluated here, with the
  service's judge code, over the per-objective scores this step already has: sending them to ``/v1/judge``
  would score every sample a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clients import RewardClient
from service.objectives.cgpo import calibrated_reward
from service.objectives.judges import JudgeContext, JudgeSpecError, default_registry, get_judge, resolve_specs
from service.training.cgpo_config import TaskSpec
from service.training.config import ConfigError
from service.training.data import Messages
from service.training.rewards import Rewards

REWARD_JUDGE = "reward_threshold"
Retry = Callable[[Callable[[], list]], list]


@dataclass(frozen=True)
class Scored:
    """One task's scores: per-objective ``rewards`` [B, K, O] (+ gated) and ``calibrated`` [B, K] in (0, 1)."""

    rewards: Rewards
    calibrated: np.ndarray


class TaskFeedback:
    """Scores and judges a task's samples through the service (with the run's outage retries)."""

    def __init__(self, client: RewardClient, objectives: Sequence[str], retry: Retry) -> None:
        self.client, self.objectives, self.retry = client, tuple(objectives), retry

    def validate(self, tasks: Sequence[TaskSpec]) -> None:
        """Every judge exists on the service with valid args; every reward names an objective or 'score'."""
        offered = {j.name for j in self.retry(self.client.judges)}
        outputs = [*self.objectives, "score"]
        for task in tasks:
            where = f"task {task.name!r}"
            if task.reward not in outputs:
                raise ConfigError(
                    f"{where}: reward {task.reward!r} is not a service output; use one of {outputs}"
                )
            missing = [j.name for j in task.judges if j.name not in offered]
            if missing:
                raise ConfigError(
                    f"{where}: judges {missing} are not offered by the service; it has {sorted(offered)}"
                )
            try:
                resolve_specs([j.spec for j in task.judges], default_registry())
            except JudgeSpecError as error:
                raise ConfigError(f"{where}: {error}") from None
            for j in task.judges:
                if j.name == REWARD_JUDGE and j.args["objective"] not in outputs:
                    raise ConfigError(f"{where}: judge {j.label!r}: objective {j.args['objective']!r} is not one "
                                      f"of {outputs}")  # fmt: skip

    def score(
        self, task: TaskSpec, prompts: list[Messages], texts: list[list[str]], baselines: list[str]
    ) -> Scored:
        """``texts[b][k]`` answers ``prompts[b]``, calibrated against ``baselines[b]``."""
        if task.reward == "score":
            request = [
                {"prompt": p, "responses": r, "baseline": a}
                for p, r, a in zip(prompts, texts, baselines, strict=True)
            ]
            groups = self.retry(lambda: self.client.score_groups(request))
            calibrated = np.array([g.calibrated for g in groups], dtype=np.float64)
            return Scored(_rewards(self.objectives, groups), calibrated)
        request = [
            {"prompt": p, "responses": [*r, a]} for p, r, a in zip(prompts, texts, baselines, strict=True)
        ]
        groups = self.retry(lambda: self.client.score_groups(request))
        everything = _rewards(self.objectives, groups)
        column = everything.objective(task.reward)  # [B, K + 1]: the baseline last
        calibrated = np.asarray(calibrated_reward(column[:, :-1], column[:, -1:]), dtype=np.float64)
        samples = Rewards(everything.names, everything.values[:, :-1], everything.gated[:, :-1])
        return Scored(samples, calibrated)

    def judge(
        self, task: TaskSpec, prompts: list[Messages], texts: list[list[str]], rewards: Rewards
    ) -> np.ndarray:
        """Verdicts ``[B, K, J]`` (True = satisfied), J in the order of ``task.judges``."""
        b, k = len(texts), len(texts[0])
        verdicts = np.zeros((b, k, len(task.judges)), dtype=bool)
        rule = [j for j, use in enumerate(task.judges) if use.name != REWARD_JUDGE]
        if rule:
            specs = [task.judges[j].spec for j in rule]
            items = [
                {"prompt": p, "response": t, "judges": specs}
                for p, row in zip(prompts, texts, strict=True)
                for t in row
            ]
            results = self.retry(lambda: self.client.judge(items))
            passed = np.array([[r.passed for r in item.results] for item in results], dtype=bool)
            verdicts[..., rule] = passed.reshape(b, k, len(rule))
        threshold = get_judge(REWARD_JUDGE)
        for j, use in enumerate(task.judges):
            if use.name == REWARD_JUDGE:
                for i in range(b):
                    for s in range(k):
                        context = JudgeContext(rewards=_outputs(rewards, i, s))
                        verdicts[i, s, j] = threshold.check("", texts[i][s], use.args, context).passed
        return verdicts

    def baseline_passes(self, task: TaskSpec, prompts: list[Messages], baselines: list[str]) -> list[bool]:
        """Whether each baseline satisfies every judge of the task (CRRAFT's fallback; the service scores it)."""
        specs = [j.spec for j in task.judges]
        items = [
            {"prompt": p, "response": a, "judges": specs} for p, a in zip(prompts, baselines, strict=True)
        ]
        return [bool(r.all_passed) for r in self.retry(lambda: self.client.judge(items))]


def _rewards(objectives: tuple[str, ...], groups: Sequence[Any]) -> Rewards:
    values = np.array([g.rewards_matrix for g in groups], dtype=np.float64)  # [B, K, O]
    gated = np.array([g.scores for g in groups], dtype=np.float64)  # [B, K]
    return Rewards(objectives, values, gated)


def _outputs(rewards: Rewards, b: int, k: int) -> dict[str, float]:
    """What a reward-threshold judge reads for sample (b, k): every objective, and 'score' (gated)."""
    out = {name: float(rewards.values[b, k, o]) for o, name in enumerate(rewards.names)}
    out["score"] = float(rewards.gated[b, k])
    return out
