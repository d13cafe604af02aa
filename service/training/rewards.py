"""The reward seam: per-objective rewards ``[B, G, K]`` with names, from the service and the trainer's rules.

The service is reached only through paretorm's own client (`clients.RewardClient`), one `score_groups`
call per step (each prompt's G completions as one group: the service computes the prompt once). A
service outage never kills a run and never turns into a reward of 0: transient errors (unreachable,
503, 429, deadline) are retried with backoff until ``outage_timeout_s``, with the wait shown on the
progress bar; a 4xx (the batch itself is wrong) stops the run with the service's own message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clients import BadRequest, RewardClient, RewardServiceError, Unauthorized
from service.training.data import Messages
from service.training.rule_rewards import RuleReward

logger = logging.getLogger(__name__)


class RewardStop(RuntimeError):
    """The service refused the batch (4xx) or stayed down past the outage budget; the run cannot go on."""


@dataclass(frozen=True)
class Rewards:
    """Rewards of one step: ``values[b, g, k]`` for objective ``names[k]``; ``gated[b, g]`` the service score."""

    names: tuple[str, ...]
    values: np.ndarray
    gated: np.ndarray

    def objective(self, name: str) -> np.ndarray:
        return self.values[..., self.names.index(name)]

    def only(self, names: Sequence[str]) -> Rewards:
        """The same rewards restricted to ``names`` (all of them when empty), in that order."""
        if not names:
            return self
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise RewardStop(f"--objectives {unknown} are not among the objectives {list(self.names)}")
        index = [self.names.index(n) for n in names]
        return Rewards(tuple(names), self.values[..., index], self.gated)


class RewardSource:
    """Scores completions: the service's objectives (if a URL is given), then the rule rewards, in that order."""

    def __init__(
        self,
        client: RewardClient | None,
        rules: Sequence[RuleReward],
        *,
        outage_timeout_s: float = 1800.0,
        on_wait: Callable[[str | None], None] = lambda status: None,
    ) -> None:
        self.client = client
        self.rules = list(rules)
        self.outage_timeout_s = outage_timeout_s
        self.on_wait = on_wait
        service = tuple(client.wait_until_ready(timeout_s=outage_timeout_s).objectives) if client else ()
        self.revision = client.model_info().revision if client else None
        self.names: tuple[str, ...] = service + tuple(rule.name for rule in self.rules)
        clash = set(service) & {rule.name for rule in self.rules}
        if clash:
            raise RewardStop(f"rule reward names {sorted(clash)} clash with the service's objectives; rename them")

    def score(
        self, prompts: Sequence[Messages], completions: Sequence[Sequence[str]], lengths: Sequence[Sequence[int]]
    ) -> Rewards:
        """``completions[b][g]`` answers ``prompts[b]``; ``lengths[b][g]`` is its generated token count."""
        groups = len(completions[0]) if completions else 0
        service, gated = self._service(prompts, completions, groups)
        rules = np.array(
            [[[rule(n) for rule in self.rules] for n in row] for row in lengths], dtype=np.float64
        ).reshape(len(completions), groups, len(self.rules))
        return Rewards(self.names, np.concatenate([service, rules], axis=-1), gated)

    def _service(
        self, prompts: Sequence[Messages], completions: Sequence[Sequence[str]], groups: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.client is None:
            shape = (len(completions), groups)
            return np.zeros((*shape, 0)), np.full(shape, np.nan)
        request = [{"prompt": p, "responses": list(c)} for p, c in zip(prompts, completions, strict=True)]
        results = self._with_outage_retries(lambda: self.client.score_groups(request))
        values = np.array([g.rewards_matrix for g in results], dtype=np.float64)
        gated = np.array([g.scores for g in results], dtype=np.float64)
        return values, gated

    def _with_outage_retries(self, call: Callable[[], list]) -> list:
        started, wait = time.monotonic(), 1.0
        while True:
            try:
                result = call()
                self.on_wait(None)
                return result
            except (BadRequest, Unauthorized) as error:
                raise RewardStop(f"the reward service refused the batch: {error}") from error
            except RewardServiceError as error:
                down_s = time.monotonic() - started
                if down_s > self.outage_timeout_s:
                    raise RewardStop(
                        f"the reward service stayed unavailable for {down_s:.0f} s (> --outage-timeout-s "
                        f"{self.outage_timeout_s:g}): {error}"
                    ) from error
                status = f"reward service unavailable for {down_s:.0f} s, retrying"
                logger.warning("%s: %s", status, error)
                self.on_wait(status)
                time.sleep(wait)
                wait = min(wait * 2, 30.0)
