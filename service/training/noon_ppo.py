"""PAMA (He & Maghsudi, arXiv 2508.07768): Noon-PPO with one value head per objective.

One step, as the paper's Algorithm 1 (algorithms.md §1):
1. sample completions; score the reward vector ``R = (R^1 .. R^K)`` (service objectives + rule rewards);
2. per-token rewards per objective: ``R^k`` on the last token, minus ``kl_coef * (log pi_old - log pi_ref)``
   on every token (TRL-style KL in the reward; applied to every objective's reward: [our reading]);
3. GAE per objective on its own value head -> ``A^k_t``; Noon clip ``max(A, 0)``;
4. ``ppo_epochs`` passes: ``u_t = pi / pi_old`` (or ``pi / pi_ref``: ``--ratio-denominator``, the paper's
   notation), ``a_k = A^k_t 1{u_t <= 1 + eps}``, PAMA's closed form per token (`service.objectives.pama_combine`,
   the same code `/v1/pama/weights` serves) -> ``s*_t``; policy loss ``-min(u s*, clip(u) s*)``; each value
   head regresses its own objective's returns (clipped value loss).
Advantages are not whitened: whitening would flip signs before the Noon clip. The value heads are linear
maps of the policy's last hidden state (TRL's value-head design), trained with the policy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from service.objectives import pama_combine
from service.training.config import PamaConfig, RunConfig
from service.training.data import PromptRow
from service.training.distributed import World
from service.training.loop import TrainerBase
from service.training.losses import clipped_value_loss, gae, masked_mean, noon_clip, noon_policy_loss
from service.training.sequences import SequenceBatch, batched_logprobs, forward_logprobs


class PolicyWithValues(nn.Module):
    """The policy and its K value heads in one module, so DDP sees every parameter the loss uses."""

    def __init__(self, policy: nn.Module, heads: nn.Linear, temperature: float) -> None:
        super().__init__()
        self.policy, self.heads, self.temperature = policy, heads, temperature

    def forward(self, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (log-probs [N, T], values [N, T, K]) at the completion tokens."""
        logp, states = forward_logprobs(self.policy, batch, self.temperature, hidden=True)
        return logp, self.heads(states.float())


class NoonPpoTrainer(TrainerBase):
    algorithm = "pama"
    needs_reference = True

    def __init__(self, run: RunConfig, cfg: PamaConfig, world: World) -> None:
        self.cfg = cfg
        super().__init__(run, world)

    def build_extra_modules(self) -> nn.ModuleDict:
        self.objectives = tuple(self.run.objectives) or self.rewards.names
        heads = nn.Linear(self.policy.model.config.hidden_size, len(self.objectives)).to(self.run.device)
        nn.init.zeros_(heads.weight)
        nn.init.zeros_(heads.bias)
        return nn.ModuleDict({"value_heads": heads})

    def trainable(self) -> nn.Module:
        return PolicyWithValues(self.policy.model, self.extra["value_heads"], self.run.temperature)

    def train_step(self, step: int, rows: list[PromptRow]) -> dict[str, Any]:
        run, cfg = self.run, self.cfg
        prompt_ids, completions, record = self.rollout(rows, run.num_generations, self.step_seed(step))
        rewards = self.score(rows, completions)
        record.update(self.reward_metrics(rewards))
        rewards = rewards.only(self.objectives)
        batch = self.flat_batch(prompt_ids, completions)
        with torch.no_grad():
            old_logp, old_values = self.model(batch)
        ref_logp = batched_logprobs(self.reference, batch, run.temperature)
        token_rewards = _token_rewards(rewards.values.reshape(-1, len(rewards.names)), old_logp, ref_logp,
                                       batch.completion_mask, cfg.kl_coef)  # fmt: skip
        advantages, returns = gae(token_rewards, old_values, batch.completion_mask, cfg.gamma, cfg.lam)
        tensors = (batch, noon_clip(advantages), returns, old_logp, old_values, ref_logp)
        started = time.perf_counter()
        record.update(self._update(tensors, rewards.names, step))
        record["update_s"] = time.perf_counter() - started
        record["kl"] = float(masked_mean(old_logp - ref_logp, batch.completion_mask))
        record["sync_s"] = self.finish_update()
        return record

    def _update(self, tensors: tuple, names: tuple[str, ...], step: int) -> dict[str, float]:
        totals: dict[str, list[float]] = {}
        generator = torch.Generator().manual_seed(self.step_seed(step))
        n = len(tensors[0])
        for _ in range(self.cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator) if self.cfg.minibatches > 1 else torch.arange(n)
            for part in order.chunk(self.cfg.minibatches):
                sliced = (tensors[0].select(part), *(t[part] for t in tensors[1:]))
                for key, value in self._minibatch(*sliced, names=names).items():
                    totals.setdefault(key, []).append(value)
        return {key: float(np.mean(values)) for key, values in totals.items()}

    def _minibatch(
        self, batch: SequenceBatch, advantages: torch.Tensor, returns: torch.Tensor, old_logp: torch.Tensor,
        old_values: torch.Tensor, ref_logp: torch.Tensor, *, names: tuple[str, ...],
    ) -> dict[str, float]:  # fmt: skip
        cfg, mask = self.cfg, batch.completion_mask
        logp, values = self.model(batch)
        denominator = old_logp if cfg.ratio_denominator == "old" else ref_logp
        ratios = torch.exp(logp.detach() - denominator).cpu().numpy()
        solved = pama_combine(advantages.cpu().numpy(), ratios=ratios, clip_eps=cfg.epsilon)
        combined = torch.as_tensor(solved.combined, dtype=torch.float32, device=logp.device)
        policy_loss = masked_mean(noon_policy_loss(logp, denominator, combined, cfg.epsilon), mask)
        value_loss = clipped_value_loss(values, old_values, returns, mask, cfg.value_clip)
        loss = policy_loss + cfg.vf_coef * value_loss
        real = mask.cpu().numpy() > 0
        stats = {"loss": float(loss.detach()), "policy_loss": float(policy_loss.detach()),
                 "value_loss": float(value_loss.detach()),
                 "pama/positive_token_share": float((solved.combined[real] > 0).mean()) if real.any() else 0.0,
                 "pama/combined_mean": float(solved.combined[real].mean()) if real.any() else 0.0}  # fmt: skip
        mean_weights = solved.weights[real].mean(0) if real.any() else np.zeros(len(names))
        stats.update({f"pama_weights/{name}": float(w) for name, w in zip(names, mean_weights, strict=True)})
        stats["grad_norm"] = self.optimizer_step(loss)
        return stats


def _token_rewards(
    final: np.ndarray, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards [N, T, K]: ``-kl_coef * KL_t`` everywhere, plus ``R^k`` on each last real token."""
    n, steps = mask.shape
    kl = (logp - ref_logp) * mask
    rewards = (-kl_coef * kl).unsqueeze(-1).repeat(1, 1, final.shape[-1])
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    has_tokens = mask.sum(-1) > 0
    final_t = torch.as_tensor(final, dtype=rewards.dtype, device=rewards.device)
    rows = torch.arange(n, device=rewards.device)[has_tokens]
    rewards[rows, last[has_tokens]] += final_t[has_tokens]
    return rewards
