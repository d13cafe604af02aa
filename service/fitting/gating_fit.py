"""Stage 2 of ArmoRM: train the gating network with a Bradley–Terry loss on preference pairs.

Backbone and regression heads are frozen, so a pair reduces to precomputed tensors: the debiased rewards
``r @ T`` of its chosen and rejected responses, and the gate-token (prompt) embeddings. The score is the
served model's ``s = Σ_k g_k(prompt) · (r @ T)_k`` and the loss ``BCEWithLogits(s_chosen − s_rejected, 1)``.

Recipe defaults (armorm.md §3.2): AdamW lr 1e-3, weight decay 0, 2000 steps of 1024 pairs drawn with
replacement, cosine annealing over the steps, temperature 10, ``logit_scale`` init 1 (trained), 3 hidden
layers of 1024, dropout 0.2 in training only, 80/20 split with seed 0. Two bugs of the public script are
*not* reproduced, because the released checkpoint does not have them: the gate is applied to a 2-D
``(B, H)`` input so its softmax runs over the objectives, not over the pair (issue #54), and the transform
``T`` is applied to the rewards the loss sees.

The module trained here is ``service.model.gating.GatingNetwork`` itself — the one the server runs. It has
no dropout, so dropout is added during training by forward hooks on the hidden layers; dropout commutes
with the ReLU that follows (it zeroes or scales by a positive constant), so this equals the script's
ReLU-then-dropout.

MAPL's intra-sample loss (algorithms.md §7.2) is optional: pairs ``(x_w, y)`` vs ``(x_l, y)`` that share a
response but differ in the prompt add ``intra_weight · −log σ(s(x_w, y) − s(x_l, y))`` to the loss. The
data carry a gate embedding per side for exactly this case. [our reading: the combination
``L_BT + λ · L_intra`` is inferred; MAPL's own weighting and its inter-sample loss are unknown.]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.fitting.stats import train_val_split
from service.model.gating import GatingNetwork
from service.preference.losses import preference_loss, preference_loss_with_intra

_EVAL_BATCH = 8192


@dataclass(frozen=True)
class GatingFitConfig:
    """Stage-2 settings; the defaults are the reference recipe's."""

    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 10.0
    logit_scale: float = 1.0
    hidden_dim: int = 1024
    n_hidden: int = 3
    dropout: float = 0.2
    val_fraction: float = 0.2
    seed: int = 0
    intra_weight: float = 1.0
    device: str = "cpu"
    log_every: int = 100

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")


@dataclass(frozen=True)
class PreferencePairs:
    """Frozen-backbone view of preference pairs; index 0 of axis 1 is the preferred side."""

    rewards: torch.Tensor
    """(N, 2, K) debiased rewards ``r @ T`` of the chosen and the rejected response."""
    gate: torch.Tensor
    """(N, 2, H) gate-token embeddings of each side's prompt (equal halves for ordinary pairs)."""

    def __post_init__(self) -> None:
        n = self.rewards.shape[0]
        if self.rewards.dim() != 3 or self.rewards.shape[1] != 2:
            raise ValueError(f"rewards must be (N, 2, K), got {tuple(self.rewards.shape)}")
        if self.gate.dim() != 3 or self.gate.shape[:2] != (n, 2):
            raise ValueError(f"gate must be (N, 2, H) with N={n}, got {tuple(self.gate.shape)}")

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def subset(self, idx: np.ndarray | torch.Tensor) -> PreferencePairs:
        index = torch.as_tensor(idx, dtype=torch.long)
        return PreferencePairs(self.rewards[index], self.gate[index])


def build_pairs(
    reward_embeddings: torch.Tensor,
    gate_embeddings: torch.Tensor,
    regression_weight: torch.Tensor,
    transform: torch.Tensor,
) -> PreferencePairs:
    """Turn (N, 2, H) last-token and gate-token embeddings into frozen debiased rewards plus gate inputs."""
    w = regression_weight.float()
    rewards = (reward_embeddings.float() @ w.T) @ transform.float()  # (N, 2, K)
    return PreferencePairs(rewards=rewards, gate=gate_embeddings.float())


def pair_scores(gating: nn.Module, pairs: PreferencePairs) -> torch.Tensor:
    """(N, 2) gated scores ``Σ_k g_k · (r @ T)_k``, the served model's ``score`` for each side."""
    n, _, h = pairs.gate.shape
    if torch.equal(pairs.gate[:, 0], pairs.gate[:, 1]):
        weights = gating(pairs.gate[:, 0]).unsqueeze(1)  # (N, 1, K): one prompt per pair
    else:
        weights = gating(pairs.gate.reshape(n * 2, h)).reshape(n, 2, -1)  # (N, 2, K)
    return (weights * pairs.rewards).sum(dim=-1)


def bradley_terry_loss(scores: torch.Tensor) -> torch.Tensor:
    """``BCEWithLogits(s_chosen − s_rejected, 1)`` = mean ``softplus(−Δ)``; scores [N, 2] (chosen, rejected)."""
    return preference_loss(pair_margins(scores))


def pair_margins(scores: torch.Tensor) -> torch.Tensor:
    """``s_chosen − s_rejected``: [N, 2] -> [N]."""
    return scores[:, 0] - scores[:, 1]


@torch.no_grad()
def pairwise_accuracy(gating: nn.Module, pairs: PreferencePairs, device: str = "cpu") -> float:
    """Share of pairs whose chosen side scores strictly higher (eval mode, no dropout)."""
    if len(pairs) == 0:
        return math.nan
    was_training = gating.training
    gating.eval()
    correct = 0
    for start in range(0, len(pairs), _EVAL_BATCH):
        part = pairs.subset(np.arange(start, min(start + _EVAL_BATCH, len(pairs))))
        s = pair_scores(gating, _to(part, device))
        correct += int((s[:, 0] > s[:, 1]).sum())
    gating.train(was_training)
    return correct / len(pairs)


def fixed_weights_accuracy(pairs: PreferencePairs, weights: torch.Tensor) -> float:
    """Accuracy of a prompt-independent weighting, e.g. uniform weights or a single objective."""
    s = (pairs.rewards * weights.to(pairs.rewards)).sum(dim=-1)
    return float((s[:, 0] > s[:, 1]).float().mean()) if len(pairs) else math.nan


@dataclass
class GatingFitResult:
    gating: GatingNetwork
    """The trained gate, on CPU, in eval mode."""
    val_accuracy: float
    train_accuracy: float
    uniform_val_accuracy: float
    """Held-out accuracy of equal weights on ``r @ T`` — what the gate must beat to be worth having."""
    per_objective_val_accuracy: list[float]
    n_train: int
    n_val: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    intra_val_accuracy: float | None = None
    val_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class _TrainingDropout:
    """Dropout after every hidden ReLU of a ``GatingNetwork``, via forward hooks (train mode only)."""

    def __init__(self, gating: GatingNetwork, p: float) -> None:
        self._handles = []
        if p > 0:
            for layer in list(gating.layers)[:-1]:
                self._handles.append(
                    layer.register_forward_hook(lambda mod, _inp, out: F.dropout(out, p, training=mod.training))
                )

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def fit_gating(
    pairs: PreferencePairs,
    config: GatingFitConfig | None = None,
    *,
    intra: PreferencePairs | None = None,
) -> GatingFitResult:
    """Train a fresh ``GatingNetwork`` on ``pairs`` (plus MAPL intra pairs if given) and evaluate it."""
    cfg = config or GatingFitConfig()
    torch.manual_seed(cfg.seed)
    train_idx, val_idx = train_val_split(len(pairs), cfg.val_fraction, cfg.seed)
    train, val = pairs.subset(train_idx), pairs.subset(val_idx)
    intra_train = intra_val = None
    if intra is not None and len(intra):
        i_tr, i_va = train_val_split(len(intra), cfg.val_fraction, cfg.seed)
        intra_train, intra_val = _to(intra.subset(i_tr), cfg.device), intra.subset(i_va)
    k, h = pairs.rewards.shape[-1], pairs.gate.shape[-1]
    gating = GatingNetwork(
        h, k, temperature=cfg.temperature, logit_scale=cfg.logit_scale,
        hidden_dim=cfg.hidden_dim, n_hidden=cfg.n_hidden,
    ).to(cfg.device)  # fmt: skip
    losses = _train(gating, _to(train, cfg.device), intra_train, cfg)
    gating.eval()
    k_eye = torch.eye(k)
    result = GatingFitResult(
        gating=gating,
        val_accuracy=pairwise_accuracy(gating, val, cfg.device),
        train_accuracy=pairwise_accuracy(gating, train, cfg.device),
        uniform_val_accuracy=fixed_weights_accuracy(val, torch.full((k,), 1.0 / k)),
        per_objective_val_accuracy=[fixed_weights_accuracy(val, k_eye[i]) for i in range(k)],
        n_train=len(train),
        n_val=len(val),
        losses=losses,
        intra_val_accuracy=pairwise_accuracy(gating, intra_val, cfg.device) if intra_val is not None else None,
        val_index=val_idx,
    )
    result.gating = gating.cpu()
    return result


def _train(
    gating: GatingNetwork, train: PreferencePairs, intra: PreferencePairs | None, cfg: GatingFitConfig
) -> list[tuple[int, float]]:
    """AdamW with a cosine schedule on random batches of `train` (and of `intra`, MAPL's intra-sample
    pairs); the loss every `log_every` steps and at the last."""
    optimizer = torch.optim.AdamW(gating.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    dropout = _TrainingDropout(gating, cfg.dropout)
    losses: list[tuple[int, float]] = []
    gating.train()
    try:
        for step in range(cfg.steps):
            idx = torch.randint(0, len(train), (cfg.batch_size,), generator=generator)
            margins = pair_margins(pair_scores(gating, train.subset(idx)))
            intra_margins = None
            if intra is not None:
                j = torch.randint(0, len(intra), (cfg.batch_size,), generator=generator)
                intra_margins = pair_margins(pair_scores(gating, intra.subset(j)))
            loss = preference_loss_with_intra(margins, intra_margins, cfg.intra_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                losses.append((step, float(loss.detach())))
    finally:
        dropout.remove()
    return losses


def _to(pairs: PreferencePairs, device: str) -> PreferencePairs:
    return PreferencePairs(pairs.rewards.to(device), pairs.gate.to(device))
