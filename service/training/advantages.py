"""From per-objective rewards ``[B, G, K]`` to advantages: group normalisation and combining objectives.

Combinations (``--combine``):
- ``weights``: fixed weights ``w`` over the named objectives (multi-objective GRPO, algorithms.md §4);
- ``direction``: a DPA unit vector ``v`` (normalised by `service.objectives.Direction`, the same code the
  service scores with);
- ``gated``: the service's gated ArmoRM score;
- ``pama``: PAMA as a GRPO weighting, critic-free: each objective's group-normalised advantage, combined by
  PAMA's closed form (`service.objectives.pama_combine`) per sequence, or per token with the PPO-ratio mask
  inside the loss. [our reading: PAMA is defined on PPO with value heads; using group-normalised
  advantages in place of GAE is this project's adaptation.]

``aggregation`` follows TRL: ``sum_then_normalize`` combines raw rewards and normalises the sum;
``normalize_then_sum`` (GDPO) normalises each objective within its group, combines, then whitens the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.objectives import Direction, pama_combine, weights_vector
from service.training.config import ConfigError, GrpoConfig
from service.training.rewards import Rewards

EPS = 1e-4


def group_normalize(values: np.ndarray, scale: str = "group", eps: float = EPS) -> np.ndarray:
    """``(r - mean_g r) / (std_g r + eps)`` within each group; groups along axis 1.

    values [B, G] or [B, G, K] -> same shape. ``scale="batch"`` divides by the batch std, ``"none"`` only
    centres (Dr. GRPO). A group whose rewards are all equal gets advantage 0.
    """
    centred = values - values.mean(axis=1, keepdims=True)
    if scale == "none":
        return centred
    if scale == "batch":
        std = values.reshape(-1, *values.shape[2:]).std(axis=0, ddof=1) if values.size > 1 else 0.0
        return centred / (std + eps)
    std = values.std(axis=1, ddof=1, keepdims=True) if values.shape[1] > 1 else np.zeros_like(centred)
    return centred / (std + eps)


def whiten(values: np.ndarray, eps: float = EPS) -> np.ndarray:
    flat = values.reshape(-1)
    std = flat.std(ddof=1) if flat.size > 1 else 0.0
    return (values - flat.mean()) / (std + eps)


def objective_weights(names: Sequence[str], cfg: GrpoConfig, weights: dict[str, float]) -> np.ndarray:
    """The ``[K]`` vector over ``names`` that combines objectives for ``weights`` / ``direction`` (zeros
    elsewhere)."""
    try:
        if cfg.combine == "direction":
            return Direction.parse(cfg.direction, names).vector
        return weights_vector(weights, names)
    except ValueError as error:
        raise ConfigError(f"--{'direction' if cfg.combine == 'direction' else 'weights'}: {error}") from None


def combined_reward(rewards: Rewards, cfg: GrpoConfig, weights: dict[str, float]) -> np.ndarray:
    """The scalar reward per completion [B, G] that ``weights`` / ``direction`` / ``gated`` train on."""
    if cfg.combine == "gated":
        if np.isnan(rewards.gated).all():
            raise ConfigError("--combine gated needs the service's gated score: give --reward-url")
        return rewards.gated
    return rewards.values @ objective_weights(rewards.names, cfg, weights)


def sequence_advantages(rewards: Rewards, cfg: GrpoConfig, weights: dict[str, float]) -> np.ndarray:
    """Advantages [B, G] for the non-PAMA combinations (PAMA per token is combined in the loss)."""
    if cfg.combine == "pama":
        per_objective = group_normalize(rewards.values, cfg.scale_rewards)
        return pama_combine(per_objective, noon=cfg.pama_noon).combined
    if cfg.aggregation == "normalize_then_sum" and cfg.combine != "gated":
        per_objective = group_normalize(rewards.values, cfg.scale_rewards)
        return whiten(per_objective @ objective_weights(rewards.names, cfg, weights))
    return group_normalize(combined_reward(rewards, cfg, weights), cfg.scale_rewards)


def pama_token_advantages(
    per_objective: np.ndarray, ratios: np.ndarray, eps: float, noon: bool
) -> tuple[np.ndarray, np.ndarray]:
    """PAMA per token: ``a_i = A_i 1{u_t <= 1 + eps}`` combined by the closed form.

    per_objective [N, K] (one advantage per sequence and objective), ratios [N, T] -> (s* [N, T], c [N, T, K]).
    """
    tokens = np.broadcast_to(per_objective[:, None, :], (*ratios.shape, per_objective.shape[-1]))
    result = pama_combine(tokens, noon=noon, ratios=ratios, clip_eps=eps)
    return result.combined, result.weights
