"""Multi-objective GRPO (Li et al., arXiv 2503.21819; TRL's GRPO surface), PAMA as an optional weighting.

One step: G completions per prompt (vLLM), per-objective rewards from the service (+ rule rewards),
advantages by the chosen combination (`advantages.py`), then ``num_iterations`` passes over
``minibatches`` with PPO's clipped ratio against the rollout-time policy and an optional k3 KL to the frozen
reference. Old log-probs are the policy's own, recomputed after the rollout (vLLM's sampling log-probs
only feed the ``rollout/logprob_gap`` staleness check); with one pass over one minibatch the ratio is 1
and the old log-probs are the current ones, detached (no second forward).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.objectives import pama_combine
from service.training.advantages import (
    group_normalize,
    objective_weights,
    pama_token_advantages,
    sequence_advantages,
)
from service.training.config import GrpoConfig, RunConfig
from service.training.data import PromptRow
from service.training.distributed import World
from service.training.loop import TrainerBase
from service.training.losses import clipped_surrogate, k3_kl, masked_mean, sequence_mean
from service.training.rewards import Rewards
from service.training.sequences import SequenceBatch, batched_logprobs, forward_logprobs, rollout_logprobs


class GrpoTrainer(TrainerBase):
    algorithm = "grpo"

    def __init__(self, run: RunConfig, cfg: GrpoConfig, world: World) -> None:
        self.cfg = cfg
        self.needs_reference = cfg.beta > 0
        super().__init__(run, world)

    def train_step(self, step: int, rows: list[PromptRow]) -> dict[str, Any]:
        run, cfg = self.run, self.cfg
        prompt_ids, completions, record = self.rollout(rows, run.num_generations, self.step_seed(step))
        rewards = self.score(rows, completions)
        record.update(self.reward_metrics(rewards))
        record.update(self._combination_metrics(rewards))
        batch = self.flat_batch(prompt_ids, completions)
        sequence_adv = self._sequence_advantages(rewards)
        single_pass = cfg.num_iterations * cfg.minibatches == 1
        tensors = _StepTensors(
            batch, torch.as_tensor(sequence_adv, dtype=torch.float32, device=batch.input_ids.device),
            old=None if single_pass else batched_logprobs(self.policy.model, batch, run.temperature),
            ref=batched_logprobs(self.reference, batch, run.temperature) if self.reference is not None else None,
            sampled=rollout_logprobs(completions, batch.completion_mask),
        )  # fmt: skip
        started = time.perf_counter()
        record.update(self._update(tensors, step))
        record["update_s"] = time.perf_counter() - started
        record["sync_s"] = self.finish_update()
        return record

    def _sequence_advantages(self, rewards: Rewards) -> np.ndarray:
        """[N] per-sequence advantages, or [N, K] per-objective ones when PAMA combines per token."""
        if self.cfg.combine == "pama" and self.cfg.pama_granularity == "token":
            per_objective = group_normalize(rewards.only(self.run.objectives).values, self.cfg.scale_rewards)
            return per_objective.reshape(-1, per_objective.shape[-1])
        if self.cfg.combine == "pama":
            rewards = rewards.only(self.run.objectives)
        return sequence_advantages(rewards, self.cfg, self.run.weights).reshape(-1)

    def _update(self, tensors: _StepTensors, step: int) -> dict[str, float]:
        cfg, n = self.cfg, len(tensors.batch)
        totals: dict[str, list[float]] = {}
        generator = torch.Generator().manual_seed(self.step_seed(step))
        for iteration in range(cfg.num_iterations):
            order = torch.randperm(n, generator=generator) if cfg.minibatches > 1 else torch.arange(n)
            for part in order.chunk(cfg.minibatches):
                for key, value in self._minibatch(tensors.select(part), first=iteration == 0).items():
                    totals.setdefault(key, []).append(value)
        return {key: float(np.mean(values)) for key, values in totals.items()}

    def _minibatch(self, t: _StepTensors, *, first: bool) -> dict[str, float]:
        cfg, mask = self.cfg, t.batch.completion_mask
        logp, _ = forward_logprobs(self.model, t.batch, self.run.temperature)
        old = logp.detach() if t.old is None else t.old
        adv = t.advantages
        if adv.dim() == 2:  # PAMA per token: the ratio mask decides which objectives count at each token
            ratios = torch.exp(logp.detach() - old).cpu().numpy()
            combined, _ = pama_token_advantages(adv.cpu().numpy(), ratios, cfg.epsilon, cfg.pama_noon)
            adv = torch.as_tensor(combined, dtype=torch.float32, device=logp.device)
        per_token, clipped = clipped_surrogate(logp, old, adv, cfg.epsilon, cfg.epsilon_high or cfg.epsilon)
        kl = k3_kl(logp, t.ref) if t.ref is not None else torch.zeros_like(logp)
        reduce = masked_mean if cfg.loss_type == "dapo" else sequence_mean
        loss = reduce(per_token + cfg.beta * kl, mask)
        stats = {"loss": float(loss.detach()), "kl": float(masked_mean(kl.detach(), mask)),
                 "clip_fraction": float(masked_mean(clipped.float(), mask))}  # fmt: skip
        if first and t.sampled is not None:  # trainer vs engine on the same tokens: the stale-weights check
            stats["rollout/logprob_gap"] = float(masked_mean((old - t.sampled).abs(), mask))
        stats["grad_norm"] = self.optimizer_step(loss)
        return stats

    def _combination_metrics(self, rewards: Rewards) -> dict[str, float]:
        """The combined reward the run optimises (and PAMA's mean weights when it combines)."""
        cfg = self.cfg
        if cfg.combine == "pama":
            rewards = rewards.only(self.run.objectives)
            weights = pama_combine(group_normalize(rewards.values, cfg.scale_rewards), noon=cfg.pama_noon).weights
            mean = weights.reshape(-1, weights.shape[-1]).mean(0)
            return {f"pama_weights/{name}": float(w) for name, w in zip(rewards.names, mean, strict=True)}
        if cfg.combine == "gated":
            return {"reward": float(rewards.gated.mean())}
        weights = objective_weights(rewards.names, cfg, self.run.weights)
        return {"reward": float((rewards.values @ weights).mean())}


@dataclass
class _StepTensors:
    """One step's training tensors, row-aligned with ``batch``; `select` cuts a minibatch of all of them."""

    batch: SequenceBatch
    advantages: torch.Tensor
    old: torch.Tensor | None
    ref: torch.Tensor | None
    sampled: torch.Tensor | None

    def select(self, rows: torch.Tensor) -> _StepTensors:
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return _StepTensors(self.batch.select(rows), self.advantages[rows], pick(self.old), pick(self.ref),
                            pick(self.sampled))  # fmt: skip
