"""Stage 2 on planted preferences: the trained gate reaches the accuracy the planted gate allows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.fitting.gating_fit import (
    GatingFitConfig,
    PreferencePairs,
    bradley_terry_loss,
    build_pairs,
    fit_gating,
    pair_scores,
)
from service.fitting.stats import train_val_split
from service.model.gating import GatingNetwork

N, H, K = 2400, 32, 4
# logit_scale starts at the planted Bradley-Terry scale (4) so a short run can match the planted probabilities.
FAST = GatingFitConfig(steps=200, batch_size=256, hidden_dim=64, n_hidden=2, lr=3e-3, logit_scale=4.0)


def _planted(seed: int = 0) -> tuple[PreferencePairs, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts in K clusters; cluster c cares mostly about objective c; labels drawn from a BT model."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(K, H, generator=g)
    cluster = torch.randint(0, K, (N,), generator=g)
    gate = centers[cluster] + 0.5 * torch.randn(N, H, generator=g)
    planted = torch.full((K, K), 0.1) + 0.6 * torch.eye(K)
    rewards = torch.randn(N, 2, K, generator=g)
    s = (planted[cluster][:, None, :] * rewards).sum(-1)
    flip = torch.rand(N, generator=g) > torch.sigmoid(4 * (s[:, 0] - s[:, 1]))
    rewards[flip] = rewards[flip].flip(1)
    pairs = PreferencePairs(rewards, gate[:, None, :].expand(N, 2, H).contiguous())
    return pairs, planted, cluster, centers


def test_gate_reaches_the_planted_gates_accuracy_and_finds_the_clusters() -> None:
    pairs, planted, cluster, centers = _planted()
    _, val = train_val_split(N, 0.2, FAST.seed)
    s = (planted[cluster][:, None, :] * pairs.rewards).sum(-1)[val]
    planted_acc = float((s[:, 0] > s[:, 1]).float().mean())

    res = fit_gating(pairs, FAST)
    assert res.n_val == len(val)
    assert res.val_accuracy >= planted_acc - 0.03
    assert res.val_accuracy > res.uniform_val_accuracy + 0.08  # the gate earns its keep
    with torch.no_grad():
        weights = res.gating(centers)  # softmax over the objectives (dim -1), not over the pair
    assert weights.argmax(dim=-1).tolist() == list(range(K))
    assert torch.allclose(weights.sum(-1), res.gating.logit_scale.detach().expand(K), atol=1e-5)
    assert res.losses[-1][1] < res.losses[0][1]


def test_training_dropout_is_gone_after_fitting() -> None:
    pairs, *_ = _planted(1)
    res = fit_gating(pairs.subset(np.arange(200)), GatingFitConfig(steps=3, batch_size=8, hidden_dim=8, n_hidden=2))
    res.gating.train()  # hooks removed: even in train mode the served module is deterministic
    x = torch.randn(5, H)
    assert torch.equal(res.gating(x), res.gating(x))
    assert isinstance(res.gating, GatingNetwork) and not any(
        layer._forward_hooks for layer in res.gating.layers
    )


def test_scores_apply_the_transform_like_the_served_model() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 2, H)
    gate = torch.randn(6, 2, H)
    w = torch.randn(K, H)
    t = torch.eye(K)
    t[1] -= torch.tensor([0.3, 1.0, 0.2, 0.7])
    pairs = build_pairs(z, gate, w, t)
    gating = GatingNetwork(H, K, hidden_dim=8, n_hidden=1).eval()
    with torch.no_grad():
        got = pair_scores(gating, pairs)
        expected = (gating(gate.reshape(-1, H)).reshape(6, 2, K) * ((z @ w.T) @ t)).sum(-1)
    assert torch.allclose(got, expected, atol=1e-5)
    bce = torch.nn.BCEWithLogitsLoss()(got[:, 0] - got[:, 1], torch.ones(6))  # the authors' formulation
    assert float(bradley_terry_loss(got)) == pytest.approx(float(bce), rel=1e-6)


def test_mapl_intra_pairs_train_the_gate_to_tell_prompts_apart() -> None:
    """One response, two prompts: only the prompt-dependent gate can order them. [our reading of MAPL]"""
    pairs, planted, cluster, centers = _planted(2)
    g = torch.Generator().manual_seed(3)
    m = 1200
    a, b = torch.randint(0, K, (m,), generator=g), torch.randint(0, K, (m,), generator=g)
    keep = a != b
    a, b = a[keep], b[keep]
    r = torch.randn(len(a), K, generator=g)
    gate = torch.stack([centers[a], centers[b]], 1) + 0.5 * torch.randn(len(a), 2, H, generator=g)
    s_a, s_b = (planted[a] * r).sum(-1), (planted[b] * r).sum(-1)
    swap = s_b > s_a
    gate[swap] = gate[swap].flip(1)
    intra = PreferencePairs(r[:, None, :].expand(-1, 2, -1).contiguous(), gate)
    res = fit_gating(pairs, FAST, intra=intra)
    assert res.intra_val_accuracy is not None and res.intra_val_accuracy > 0.85
