"""CGPO's three optimisers as plain functions: who is selected, with what weight, and the loss.

Shapes: ``B`` prompts of one task, ``K`` samples each; flattened samples ``N = B * K`` (prompt-major);
``T`` completion tokens. ``feasible[B, K]`` is the AND of the task's judges (CGPO's X+); ``calibrated`` is
``sigma(r(s, a) - r(s, baseline))``; ``kl`` is the sequence-level ``log pi(a|s) - log pi_ref(a|s)``.
Every function is checked against hand-computed values in tests/training/test_cgpo_losses.py. Formulas:
algorithms.md §6.3-6.5; where the paper is silent the reading is marked *our reading*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NONE = -1
"""Index meaning "no sample selected for this prompt"."""


def sequence_logprob(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log pi(a|s)``: the sum of the completion tokens' log-probs. logp, mask [N, T] -> [N]."""
    return (logp * mask).sum(-1)


def kl_factor(kl: torch.Tensor, kl_max: float) -> torch.Tensor:
    """CRPG's ``max(1 - KL/KL_max, 0)`` (any shape). A negative sample KL gives a factor above 1, as written."""
    return (1.0 - kl / kl_max).clamp(min=0.0)


def crpg_rewards(
    calibrated: torch.Tensor, feasible: torch.Tensor, kl: torch.Tensor, kl_max: float
) -> torch.Tensor:
    """``R~_cr = max(1 - KL/KL_max, 0) * (R_calib if feasible else 0)``; all [N] (or [B, K]) -> same shape."""
    return kl_factor(kl, kl_max) * torch.where(feasible, calibrated, torch.zeros_like(calibrated))


def crpg_loss(seq_logp: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE with the batch-mean baseline, minimised: ``-(1/n) sum_i log pi(a_i) (R~_i - mean_j R~_j)``.

    seq_logp [N] (with gradients), rewards [N] (constants) -> scalar. No ratio, no clip (§6.3).
    """
    advantages = rewards - rewards.mean()
    return -(seq_logp * advantages.detach()).mean()


def crraft_select(
    scores: torch.Tensor, feasible: torch.Tensor, kl: torch.Tensor, kl_max: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best surviving sample per prompt: drop violators and ``KL > KL_max``, then argmax the reward.

    scores, kl [B, K] float; feasible [B, K] bool -> (index [B] with `NONE` where nothing survives,
    over_kl [B, K] bool). Ties go to the first sample.
    """
    over_kl = kl > kl_max
    survivors = feasible & ~over_kl
    masked = torch.where(survivors, scores, torch.full_like(scores, -torch.inf))
    index = masked.argmax(-1)
    return torch.where(survivors.any(-1), index, torch.full_like(index, NONE)), over_kl


def crraft_loss(seq_logp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Reward-weighted SFT on the selected answers: ``-(1/n) sum_i R_calib(a*_i) log pi(a*_i)``. [M] -> scalar.

    *Our reading*: n is the number of prompts that have a selection (skipped prompts do not dilute the step).
    """
    return -(seq_logp * weights.detach()).mean()


def codpo_pairs(scores: torch.Tensor, feasible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CODPO's pair per prompt: chosen = best feasible, rejected = worst violator. [B, K] -> ([B], [B]).

    No feasible sample: the prompt is skipped (`NONE` in both). No violator: rejected = the worst sample
    overall (§6.4). *Our reading*: when that is the chosen sample itself (all scores tied, or K = 1) the
    prompt is skipped too: a pair of one answer with itself has no preference to learn.
    """
    low, high = torch.full_like(scores, -torch.inf), torch.full_like(scores, torch.inf)
    chosen = torch.where(feasible, scores, low).argmax(-1)
    violators = ~feasible
    worst_violator = torch.where(violators, scores, high).argmin(-1)
    rejected = torch.where(violators.any(-1), worst_violator, scores.argmin(-1))
    keep = feasible.any(-1) & (rejected != chosen)
    none = torch.full_like(chosen, NONE)
    return torch.where(keep, chosen, none), torch.where(keep, rejected, none)


def codpo_loss(
    chosen_logp: torch.Tensor, rejected_logp: torch.Tensor, chosen_ref: torch.Tensor, rejected_ref: torch.Tensor,
    chosen_tokens: torch.Tensor, beta: float, nll_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``-[log sigma(beta h+ - beta h-) + (lambda/|a+|) log pi(a+)]``, mean over pairs; all inputs [P].

    ``h = log pi(a) - log pi_ref(a)`` (sequence sums). Returns (loss, the DPO part, the NLL part), scalars.
    """
    logits = beta * ((chosen_logp - chosen_ref) - (rejected_logp - rejected_ref))
    dpo = F.softplus(-logits).mean()
    nll = (-chosen_logp / chosen_tokens.clamp(min=1)).mean()
    return dpo + nll_coef * nll, dpo, nll
