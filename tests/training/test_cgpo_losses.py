"""CGPO's selections and losses against hand-computed values, edge cases included (algorithms.md §6.3-6.5)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from service.training.cgpo_config import CgpoConfig, parse_judge_flag
from service.training.cgpo_losses import (
    NONE,
    codpo_loss,
    codpo_pairs,
    crpg_loss,
    crpg_rewards,
    crraft_loss,
    crraft_select,
    sequence_logprob,
)
from service.training.config import ConfigError

T, F = True, False


def test_crpg_rewards_zero_violators_and_scale_by_kl() -> None:
    calibrated = torch.tensor([0.8, 0.6, 0.9, 0.5])
    feasible = torch.tensor([T, F, T, T])
    kl = torch.tensor([0.0, 0.0, 5.0, 20.0])  # KL_max = 10: factors 1, 1, 0.5, 0 (clamped)
    assert crpg_rewards(calibrated, feasible, kl, 10.0).tolist() == pytest.approx([0.8, 0.0, 0.45, 0.0])


def test_crpg_loss_is_reinforce_with_the_batch_mean_baseline() -> None:
    seq = torch.tensor([-2.0, -3.0, -1.0], requires_grad=True)
    rewards = torch.tensor([0.9, 0.0, 0.3])  # mean 0.4 -> advantages 0.5, -0.4, -0.1
    loss = crpg_loss(seq, rewards)
    assert float(loss.detach()) == pytest.approx(-(-2 * 0.5 + -3 * -0.4 + -1 * -0.1) / 3)
    loss.backward()
    assert seq.grad.tolist() == pytest.approx([-0.5 / 3, 0.4 / 3, 0.1 / 3])


def test_crraft_drops_violators_and_over_kl_samples_then_takes_the_best() -> None:
    scores = torch.tensor([[0.9, 0.7, 0.2], [0.9, 0.8, 0.1], [0.5, 0.6, 0.7]])
    feasible = torch.tensor([[F, T, T], [T, T, F], [F, F, F]])
    kl = torch.tensor([[0.0, 1.0, 1.0], [12.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    index, over = crraft_select(scores, feasible, kl, 10.0)
    # row 0: the violator 0.9 is dropped -> 0.7; row 1: 0.9 is over KL -> 0.8; row 2: nothing survives
    assert index.tolist() == [1, 1, NONE]
    assert over.tolist() == [[F, F, F], [T, F, F], [F, F, F]]


def test_crraft_loss_is_reward_weighted_sft() -> None:
    seq = torch.tensor([-4.0, -2.0])
    assert float(crraft_loss(seq, torch.tensor([0.5, 0.75]))) == pytest.approx((4 * 0.5 + 2 * 0.75) / 2)


def test_codpo_pairs_best_feasible_vs_worst_violator_and_edge_cases() -> None:
    scores = torch.tensor([[0.2, 0.9, 0.5, 0.1], [0.3, 0.6, 0.4, 0.8], [0.9, 0.8, 0.7, 0.6], [0.5, 0.5, 0.5, 0.5]])
    feasible = torch.tensor([[T, F, T, F], [F, F, F, F], [T, T, T, T], [T, T, T, T]])
    chosen, rejected = codpo_pairs(scores, feasible)
    # row 0: best feasible 0.5 (k=2) vs worst violator 0.1 (k=3), not the higher-scoring violator 0.9
    # row 1: no feasible sample -> skipped; row 2: no violator -> the worst sample overall (k=3)
    # row 3: all tied, the worst overall is the chosen one itself -> skipped (our reading)
    assert chosen.tolist() == [2, NONE, 0, NONE]
    assert rejected.tolist() == [3, NONE, 3, NONE]


def test_codpo_loss_matches_the_formula() -> None:
    chosen, rejected = torch.tensor([-5.0]), torch.tensor([-7.0])
    chosen_ref, rejected_ref = torch.tensor([-6.0]), torch.tensor([-6.5])
    loss, dpo, nll = codpo_loss(chosen, rejected, chosen_ref, rejected_ref, torch.tensor([4.0]), 0.1, 5.0)
    logit = 0.1 * ((-5 + 6) - (-7 + 6.5))  # 0.15
    assert float(dpo) == pytest.approx(math.log1p(math.exp(-logit)))
    assert float(nll) == pytest.approx(5.0 / 4)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-logit)) + 5.0 * 5.0 / 4)


def test_sequence_logprob_ignores_padding() -> None:
    logp = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert sequence_logprob(logp, mask).tolist() == [-3.0, -0.5]


def test_task_file_is_validated_with_fix_it_messages(tmp_path: Path) -> None:
    good = tmp_path / "tasks.json"
    good.write_text('{"chat": {"judges": [{"name": "word_count", "args": {"max": 3}}], "optimizer": "codpo",'
                    ' "k": 3, "weight": 2}, "default": {"judges": [{"name": "all_lowercase"}]}}')  # fmt: skip
    cfg = CgpoConfig(tasks_file=good)
    assert [(t.name, t.optimizer, t.k, t.weight) for t in cfg.tasks] == [("chat", "codpo", 3, 2.0),
                                                                        ("default", "crpg", 4, 1.0)]  # fmt: skip
    assert cfg.task_for(None).name == "default" and cfg.task_for("chat").name == "chat"
    assert cfg.task_for("math") is None
    bad = tmp_path / "bad.json"
    for text, message in [('{"a": {"judges": []}}', "non-empty list"),
                          ('{"a": {"judges": [{"name": "x"}], "optimizer": "ppo"}}', "not one of"),
                          ('{"a": {"judges": [{"name": "x"}], "optimizer": "crraft", "k": 1}}', "'k' >= 2"),
                          ('{"a": {"judges": [{"name": "x"}], "kl_maxx": 1}}', "unknown keys")]:  # fmt: skip
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            CgpoConfig(tasks_file=bad)
    with pytest.raises(ConfigError, match="needs judges"):
        CgpoConfig()
    assert parse_judge_flag('word_count:{"max": 8}') == {"name": "word_count", "args": {"max": 8}}
