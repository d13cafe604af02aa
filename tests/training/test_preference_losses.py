"""MODPO's and MAPL's losses against hand-computed values, the shared Bradley–Terry loss, and the margin cache.

Fast (no model, no service): the default ``make test`` run.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from service.preference.losses import pair_accuracy, preference_loss, preference_loss_with_intra
from service.training.config import ConfigError
from service.training.losses import dpo_logits, modpo_logits, sigmoid_loss
from service.training.margin_cache import MarginCache
from service.training.offline_config import ModpoConfig, sweep_weights


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_modpo_reduces_exactly_to_dpo_when_the_other_weights_are_zero() -> None:
    h_w, h_l = torch.tensor([1.5, -0.2, 3.0]), torch.tensor([0.5, 0.4, -1.0])
    delta = torch.tensor([[2.0, -1.0], [0.3, 0.7], [-5.0, 1.0]])
    got = modpo_logits(h_w, h_l, delta, torch.zeros(2), trained_weight=1.0, beta=0.1)
    assert torch.equal(got, dpo_logits(h_w, h_l, 0.1))
    # TRL's DPOTrainer "sigmoid" loss, -logsigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))), by hand:
    sides = zip([1.5, -0.2, 3.0], [0.5, 0.4, -1.0], strict=True)
    trl = sum(-math.log(1 / (1 + math.exp(-0.1 * (w - l)))) for w, l in sides)
    assert float(sigmoid_loss(got)) == pytest.approx(trl / 3, rel=1e-6)
    # no margin objectives at all (M = 0) is DPO too
    assert torch.equal(modpo_logits(h_w, h_l, torch.zeros(3, 0), torch.zeros(0), 1.0, 0.1), got)


def test_trl_dpo_sigmoid_loss_is_the_formula_compared_against() -> None:
    """TRL's DPO loss is inline in `DPOTrainer._compute_loss` (no function to call without a trainer):
    check the installed source still says what the test above computes by hand."""
    spec = importlib.util.find_spec("trl")
    if spec is None or spec.origin is None:
        pytest.skip("trl is not installed")
    source = (Path(spec.origin).parent / "trainer" / "dpo_trainer.py").read_text()
    assert "per_sequence_loss = -F.logsigmoid(self.beta * delta_score)" in source
    assert "chosen_scores - rejected_scores" in source


def test_modpo_logit_by_hand_with_two_margins() -> None:
    # w = (w_k, w_1, w_2) = (0.5, 0.3, 0.2); beta 0.1
    h_w, h_l = torch.tensor([2.0]), torch.tensor([-1.0])
    delta = torch.tensor([[1.0, -2.0]])  # r_1(y_w) - r_1(y_l) = 1, r_2: -2
    got = modpo_logits(h_w, h_l, delta, torch.tensor([0.3, 0.2]), trained_weight=0.5, beta=0.1)
    # (1/0.5) * (0.1 * 3 - (0.3 * 1 + 0.2 * -2)) = 2 * (0.3 + 0.1) = 0.8
    assert float(got) == pytest.approx(0.8)
    assert float(sigmoid_loss(got)) == pytest.approx(_softplus(-0.8))


def test_a_trained_weight_near_zero_is_refused_with_the_fix() -> None:
    from service.training.cli import parse

    base = ["modpo", "--policy", "p", "--prompts", __file__, "--out", "/tmp/x", "--steps", "1",
            "--rule-reward", "length", "--objective", "pref"]  # fmt: skip
    with pytest.raises(ConfigError, match="must be >= 0.01"):
        parse([*base, "--weights", "pref=0.001,length=0.999"])
    with pytest.raises(ConfigError, match="add pref=W to --weights"):
        parse([*base, "--weights", "length=1"])
    with pytest.raises(ConfigError, match="--sweep 0.0"):
        ModpoConfig(objective="pref", sweep=(0.0, 0.5))
    with pytest.raises(ConfigError, match="needs --objective"):
        parse(["modpo", *base[1:-2], "--weights", "length=1"])
    _, run, cfg = parse([*base, "--weights", "pref=0.6,length=0.4"])
    assert cfg.objective == "pref" and run.weights == {"pref": 0.6, "length": 0.4}


def test_sweep_rescales_the_other_weights_to_the_rest_of_the_simplex() -> None:
    assert sweep_weights({"pref": 1.0, "a": 3.0, "b": 1.0}, "pref", 0.2) == pytest.approx(
        {"pref": 0.2, "a": 0.6, "b": 0.2}
    )
    assert sweep_weights({"a": 0.0, "b": 0.0}, "pref", 0.5) == pytest.approx({"pref": 0.5, "a": 0.25, "b": 0.25})


def test_intra_sample_loss_by_hand() -> None:
    # pairs: margins beta (h_w - h_l); intra: beta (h(y|x_w) - h(y|x_l))
    pairs, intra = torch.tensor([0.4, -0.2]), torch.tensor([1.0, 0.0, -3.0])
    want = (_softplus(-0.4) + _softplus(0.2)) / 2 + 0.5 * (_softplus(-1.0) + _softplus(0.0) + _softplus(3.0)) / 3
    assert float(preference_loss_with_intra(pairs, intra, 0.5)) == pytest.approx(want, rel=1e-6)
    assert float(preference_loss_with_intra(pairs, intra, 0.0)) == pytest.approx(float(preference_loss(pairs)))
    assert float(preference_loss_with_intra(pairs, None, 1.0)) == pytest.approx(float(preference_loss(pairs)))
    only_intra = preference_loss_with_intra(torch.zeros(0, requires_grad=True), intra, 1.0)
    assert float(only_intra.detach()) == pytest.approx(float(preference_loss(intra)))
    assert pair_accuracy(intra) == pytest.approx(1 / 3) and math.isnan(pair_accuracy(torch.zeros(0)))


def test_fitting_trains_the_gate_with_the_same_loss_code() -> None:
    from service.fitting import gating_fit
    from service.preference import losses

    scores = torch.tensor([[2.0, 1.0], [0.0, 3.0]])  # (chosen, rejected)
    assert float(gating_fit.bradley_terry_loss(scores)) == pytest.approx((_softplus(-1.0) + _softplus(3.0)) / 2)
    assert gating_fit.preference_loss_with_intra is losses.preference_loss_with_intra
    assert float(sigmoid_loss(torch.tensor([1.0, -3.0]))) == pytest.approx(
        float(gating_fit.bradley_terry_loss(scores))
    )


def test_fitting_reads_preferences_with_the_shared_readers() -> None:
    from service.fitting import data as fitting_data
    from service.preference import data as shared

    assert fitting_data.read_preferences is shared.read_preferences
    assert fitting_data.read_intra_pairs is shared.read_intra_pairs


def test_read_mapl_groups_augment_output_by_source_line(tmp_path: Path) -> None:
    from service.preference.data import DataError, read_mapl

    lines = [
        {"kind": "original", "source_line": 1, "prompt": "Hi", "chosen": "a", "rejected": "b"},
        {"kind": "intra", "source_line": 1, "prompt_chosen": "Hi. Be brief.", "prompt_rejected": "Hi. Be long.",
         "response": "a"},
        {"kind": "inter", "source_line": 1, "prompt_more": "Hi. X.", "prompt_fewer": "Hi. Y.", "chosen": "a",
         "rejected": "b"},
        {"prompt": "Other", "chosen": "c", "rejected": "d"},  # no kind, no source_line: its own example
    ]  # fmt: skip
    path = tmp_path / "aug.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    examples = read_mapl(path).examples
    assert [(len(e.pairs), len(e.intra), len(e.inter)) for e in examples] == [(1, 1, 1), (1, 0, 0)]
    assert examples[0].intra[0].chosen[-1] == {"role": "assistant", "content": "a"}
    assert examples[0].inter[0].more_rejected[0]["content"] == "Hi. X."
    path.write_text(json.dumps({"kind": "bogus"}) + "\n")
    with pytest.raises(DataError, match=r"aug.jsonl:1: unknown kind"):
        read_mapl(path)


class _CountingScorer:
    """A fake reward service: reward = (response length, 1) per response; counts the pairs it scored."""

    def __init__(self) -> None:
        self.pairs = 0

    def __call__(self, prompts: list, responses: list[list[str]]) -> np.ndarray:
        self.pairs += len(prompts)
        return np.array([[[len(r), 1.0] for r in pair] for pair in responses], dtype=np.float64)


def test_margin_cache_scores_each_pair_once_per_revision(tmp_path: Path) -> None:
    path = tmp_path / "margins.json"
    prompt = [{"role": "user", "content": "q"}]
    pairs = [(prompt, "long answer", "no"), (prompt, "x", "yy"), (prompt, "long answer", "no")]
    scorer = _CountingScorer()
    first = MarginCache(path, "rev-1", ["len", "one"]).fill(pairs, scorer)
    assert scorer.pairs == 2  # the repeated pair is scored once
    assert first.shape == (3, 2, 2) and first[0, 0, 0] == 11 and first[1, 1, 0] == 2
    again = MarginCache(path, "rev-1", ["len", "one"])
    assert np.array_equal(again.fill(pairs, scorer), first) and scorer.pairs == 2 and again.scored_now == 0
    again.fill([*pairs, (prompt, "new", "pair")], scorer)
    assert scorer.pairs == 3  # only the added pair
    MarginCache(path, "rev-2", ["len", "one"]).fill(pairs, scorer)
    assert scorer.pairs == 5  # another model revision: its rewards are not comparable, score again
    assert json.loads(path.read_text())["revision"] == "rev-2"


def test_micro_batch_shares_sum_to_the_whole_step_loss_and_gradient() -> None:
    """What gradient accumulation in `OfflineTrainer.accumulate` rests on: shares of a mean add up to it."""
    from service.training.offline import OfflineTrainer

    margins = torch.randn(11, requires_grad=True)
    whole = preference_loss(margins)
    (expected,) = torch.autograd.grad(whole, margins)
    parts = [margins[:4], margins[4:5], margins[5:], margins[:0]]  # uneven, and one empty micro-batch
    total = sum(OfflineTrainer.share(preference_loss, part, margins.numel()) for part in parts)
    (accumulated,) = torch.autograd.grad(total, margins)
    torch.testing.assert_close(total, whole)
    torch.testing.assert_close(accumulated, expected)
