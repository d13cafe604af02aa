"""Losses as plain functions with shape comments (no ``loss_type`` string chains inside one function).

Shapes: ``N`` sequences, ``T`` completion tokens (right-padded), ``K`` objectives; ``mask[N, T]`` is 1 on
real completion tokens. Every function is exercised against hand-computed values in
tests/training/test_losses.py.
"""

from __future__ import annotations

import torch

from service.preference.losses import preference_loss


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)[target]``: logits [N, T, V], targets [N, T] -> [N, T].

    Dividing by the sampling temperature makes the trainer's log-probs those of the distribution the
    rollout sampled from (as TRL does).
    """
    logits = logits.float() / temperature
    return torch.gather(logits.log_softmax(-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of the whole batch (DAPO's token-level mean)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of each sequence's token mean (the original GRPO normalisation)."""
    return ((values * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a per-token loss ``-min(rA, clip(r, 1-eps_low, 1+eps_high)A)``.

    logp, old_logp [N, T]; advantages [N] (one per sequence) or [N, T] -> (loss [N, T], clipped [N, T] bool).
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(pi || pi_ref) per token: ``exp(d) - d - 1``, d = ref - logp. [N, T] -> [N, T]."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def noon_clip(advantages: torch.Tensor) -> torch.Tensor:
    """PAMA's "no negative" advantage ``max(A, 0)`` (any shape)."""
    return advantages.clamp(min=0)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, one objective per last-axis slot.

    rewards, values [N, T, K]; mask [N, T] -> (advantages [N, T, K], returns [N, T, K]). The value after a
    sequence's last real token is 0 (episodes end with the completion).
    """
    mask3 = mask.unsqueeze(-1).to(rewards.dtype)
    following = torch.cat([mask3[:, 1:], torch.zeros_like(mask3[:, :1])], dim=1)  # is t + 1 a real token
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1) * following
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (deltas[:, t] + gamma * lam * following[:, t] * running) * mask3[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask3


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped value loss ``0.5 max((v - R)^2, (clip(v) - R)^2)`` averaged over tokens and objectives.

    values, old_values, returns [N, T, K]; mask [N, T] -> scalar.
    """
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    per = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean(-1)
    return 0.5 * masked_mean(per, mask)


def noon_policy_loss(
    logp: torch.Tensor, denominator_logp: torch.Tensor, combined: torch.Tensor, eps: float
) -> torch.Tensor:
    """Noon-PPO's surrogate with PAMA's combined advantage ``s* >= 0``: ``-min(u s, clip(u) s)`` per token.

    For ``s >= 0`` this equals ``-s min(u, 1 + eps)``. logp, denominator_logp, combined [N, T] -> [N, T].
    """
    loss, _ = clipped_surrogate(logp, denominator_logp, combined, eps, eps)
    return loss


def sft_nll(logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of the target tokens (token mean), optionally weighted per sequence [N]."""
    per = -logp if weights is None else -logp * weights[:, None]
    return masked_mean(per, mask)


def rsf_select(scores: torch.Tensor) -> torch.Tensor:
    """Rejection sampling's pick: the index of the best of K samples per prompt. scores [B, K] -> [B]."""
    return scores.argmax(-1)


def dpo_logits(
    chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, beta: float
) -> torch.Tensor:
    """``beta (h_w - h_l)`` with ``h = log pi(y|x) - log pi_ref(y|x)`` summed over tokens. [N] -> [N]."""
    return beta * (chosen_logratio - rejected_logratio)


def sigmoid_loss(logits: torch.Tensor) -> torch.Tensor:
    """``-log sigma(logits)``, numerically stable, mean over pairs (the fitter's Bradley–Terry loss too)."""
    return preference_loss(logits)


def modpo_logits(
    chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, margin_delta: torch.Tensor,
    margin_weights: torch.Tensor, trained_weight: float, beta: float,
) -> torch.Tensor:
    """MODPO's logit ``(1/w_k) (beta (h_w - h_l) - w_{-k} . (r_{-k}(y_w) - r_{-k}(y_l)))`` (algorithms.md §2.2).

    chosen/rejected_logratio [N] (summed ``log pi - log pi_ref``); margin_delta [N, M] (chosen minus rejected
    margin rewards); margin_weights [M] -> [N]. With ``M = 0`` (or zero margin weights) and ``w_k = 1`` this
    is `dpo_logits`: the loss is DPO's.
    """
    margin = margin_delta.to(chosen_logratio) @ margin_weights.to(chosen_logratio)  # [N]
    return (dpo_logits(chosen_logratio, rejected_logratio, beta) - margin) / trained_weight
