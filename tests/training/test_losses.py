"""Losses and advantages against values computed by hand (each case says where its numbers come from)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from service.objectives import pama_combine
from service.training.advantages import group_normalize, pama_token_advantages, sequence_advantages, whiten
from service.training.config import GrpoConfig
from service.training.losses import (
    clipped_surrogate,
    clipped_value_loss,
    gae,
    k3_kl,
    masked_mean,
    noon_clip,
    noon_policy_loss,
    rsf_select,
    sequence_mean,
    sft_nll,
    token_logprobs,
)
from service.training.rewards import Rewards


def test_group_normalize_by_hand_and_zero_variance_group() -> None:
    rewards = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    adv = group_normalize(rewards)
    # group 0: mean 2, sample std 1 -> (-1, 0, 1) / (1 + 1e-4)
    np.testing.assert_allclose(adv[0], np.array([-1.0, 0.0, 1.0]) / 1.0001)
    np.testing.assert_array_equal(adv[1], 0.0)  # every answer equally good: no signal, no NaN
    np.testing.assert_allclose(group_normalize(rewards, "none")[0], [-1.0, 0.0, 1.0])


def test_normalize_then_sum_differs_from_sum_then_normalize() -> None:
    # objective 0 spans 0..100, objective 1 spans 0..10: summing first lets objective 0 dominate.
    values = np.array([[[0.0, 10.0], [100.0, 0.0], [50.0, 5.0]]])
    rewards = Rewards(("big", "small"), values, np.full((1, 3), np.nan))
    weights = {"big": 1.0, "small": 1.0}
    sum_first = sequence_advantages(rewards, GrpoConfig(), weights)
    np.testing.assert_allclose(sum_first, group_normalize(values @ np.ones(2)))
    gdpo = sequence_advantages(rewards, GrpoConfig(aggregation="normalize_then_sum"), weights)
    assert sum_first[0, 1] > 0.9  # the big objective's favourite wins
    # each objective normalised alone: about (-1, 1, 0) and (1, -1, 0), which cancel to (nearly) nothing
    np.testing.assert_allclose(whiten(np.zeros((1, 3))), 0.0)
    assert abs(gdpo[0, 1]) < abs(sum_first[0, 1])


def test_direction_is_unit_normalised_and_gated_uses_the_service_score() -> None:
    values = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    rewards = Rewards(("a", "b"), values, np.array([[3.0, 1.0]]))
    direction = sequence_advantages(rewards, GrpoConfig(combine="direction", direction={"a": 3, "b": 4}), {})
    np.testing.assert_allclose(direction, group_normalize(np.array([[0.6, 0.8]])))
    gated = sequence_advantages(rewards, GrpoConfig(combine="gated"), {})
    np.testing.assert_allclose(gated, group_normalize(np.array([[3.0, 1.0]])))


def test_pama_sequence_advantage_matches_pama_combine() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 4, 2))
    rewards = Rewards(("a", "b"), values, np.full((3, 4), np.nan))
    adv = sequence_advantages(rewards, GrpoConfig(combine="pama"), {})
    expected = pama_combine(group_normalize(values)).combined
    np.testing.assert_array_equal(adv, expected)
    # by hand: both positive -> the smaller; opposite signs -> 0; both negative -> the larger
    hand = pama_combine(np.array([[0.5, 2.0], [-1.0, 3.0], [-2.0, -0.5]])).combined
    np.testing.assert_array_equal(hand, [0.5, 0.0, -0.5])


def test_pama_per_token_ratio_mask() -> None:
    per_objective = np.array([[0.4, 0.9]])
    ratios = np.array([[1.0, 1.5]])  # second token is clipped (u > 1 + 0.2): its objectives drop to 0
    combined, weights = pama_token_advantages(per_objective, ratios, 0.2, noon=True)
    np.testing.assert_allclose(combined, [[0.4, 0.0]])
    np.testing.assert_allclose(weights[0, 0], [1.0, 0.0])


def test_clipped_surrogate_by_hand() -> None:
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    old = torch.zeros(1, 3)
    loss, clipped = clipped_surrogate(logp, old, torch.tensor([2.0]), 0.2, 0.2)
    # ratio 1.5 with A = 2: min(3.0, 1.2 * 2) = 2.4; ratio 0.5: min(1.0, 0.8 * 2) = 1.0; ratio 1: 2
    torch.testing.assert_close(loss, torch.tensor([[-2.4, -1.0, -2.0]]))
    assert clipped.tolist() == [[True, False, False]]
    loss_neg, _ = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.28)
    # A = -1: min(-1.5, -1.28) = -1.5; min(-0.5, -0.8) = -0.8
    torch.testing.assert_close(loss_neg, torch.tensor([[1.5, 0.8, 1.0]]))


def test_k3_kl_by_hand() -> None:
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    d = math.log(0.25) - math.log(0.5)
    torch.testing.assert_close(k3_kl(logp, ref), torch.tensor([[math.exp(d) - d - 1]]))
    assert float(k3_kl(ref, ref)) == 0.0


def test_noon_clip_and_noon_policy_loss() -> None:
    torch.testing.assert_close(noon_clip(torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([0.0, 0.0, 2.0]))
    logp = torch.log(torch.tensor([[1.5, 0.9]]))
    loss = noon_policy_loss(logp, torch.zeros(1, 2), torch.tensor([[2.0, 2.0]]), 0.2)
    # s >= 0: -s * min(u, 1 + eps) -> -2 * 1.2 and -2 * 0.9
    torch.testing.assert_close(loss, torch.tensor([[-2.4, -1.8]]))


def test_gae_per_objective_by_hand() -> None:
    # one sequence, 3 real tokens + 1 pad, 2 objectives; rewards only at the last real token.
    rewards = torch.zeros(1, 4, 2)
    rewards[0, 2] = torch.tensor([1.0, -2.0])
    values = torch.tensor([[[0.5, 0.0], [0.2, 0.1], [0.4, -1.0], [9.0, 9.0]]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # objective 0: d2 = 1 - 0.4 = 0.6; d1 = 0 + 0.4 - 0.2 = 0.2; d0 = 0.2 - 0.5 = -0.3
    # A2 = 0.6, A1 = 0.2 + 0.5*0.6 = 0.5, A0 = -0.3 + 0.5*0.5 = -0.05; the pad's value 9 never leaks in
    torch.testing.assert_close(adv[0, :, 0], torch.tensor([-0.05, 0.5, 0.6, 0.0]))
    # objective 1: d2 = -2 + 1 = -1; d1 = -1 - 0.1 = -1.1; d0 = 0.1 - 0 = 0.1 -> A = (0.1 - 0.8, -1.6, -1)
    torch.testing.assert_close(adv[0, :, 1], torch.tensor([-0.7, -1.6, -1.0, 0.0]))
    torch.testing.assert_close(returns[0, :3], adv[0, :3] + values[0, :3])


def test_value_loss_clips_moves_away_from_old_values() -> None:
    values, old, returns = torch.tensor([[[2.0]]]), torch.tensor([[[0.0]]]), torch.tensor([[[1.0]]])
    # unclipped (2-1)^2 = 1; clipped value 0.2 -> (0.2-1)^2 = 0.64; max = 1 -> 0.5
    assert float(clipped_value_loss(values, old, returns, torch.ones(1, 1), 0.2)) == pytest.approx(0.5)


def test_token_means_rsf_and_sft() -> None:
    values, mask = torch.tensor([[1.0, 3.0], [5.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert float(masked_mean(values, mask)) == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert float(sequence_mean(values, mask)) == pytest.approx(3.5)  # mean(2, 5)
    assert rsf_select(torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 1.0]])).tolist() == [1, 0]
    assert float(sft_nll(torch.log(torch.tensor([[0.5, 0.25]])), torch.ones(1, 2))) == pytest.approx(
        -(math.log(0.5) + math.log(0.25)) / 2
    )


def test_token_logprobs_divides_by_temperature() -> None:
    logits = torch.tensor([[[2.0, 0.0]]])
    got = token_logprobs(logits, torch.tensor([[0]]), temperature=2.0)
    torch.testing.assert_close(got, torch.log_softmax(torch.tensor([1.0, 0.0]), -1)[:1].view(1, 1))
