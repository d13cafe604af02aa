"""Learning tests of the offline trainers (the second CI stage, ``make test-learning``).

The preference data are `preference_files.length_pairs`: 48 pairs over the 12 training prompts, a short
(1-3 words) and a long (10-14 words) answer, the short one chosen 75% of the time (label noise, so the
Bradley–Terry reward gap of the data is finite, ``logit(0.75) = 1.1``).

MODPO: the data rank ``brevity``; the margin objective is answer length (``length:16:0:1``, whose gap
between the short and long answers is about -0.65). The optimum of §2.1 prefers the short answer by
``w_k 1.1 - (1 - w_k) 0.65``: longer answers than the initial policy at ``w_k = 0.1``, shorter at 0.9.
Measured (8 seeded samples per held-out prompt, 40 steps, lr 5e-5): length 0.52 before; 0.99 / 0.49 /
0.17 at w_k = 0.1 / 0.5 / 0.9. The test asks for a quarter of the range either way, and monotone order.

MAPL: the same pairs through ``paretorm augment`` (2 instructions per prompt); held out: the 6 held-out
prompts' pairs augmented alike. Measured (40 steps, lr 5e-5, three run seeds): held-out intra-sample
implicit-reward accuracy 0.79 with MAPL's intra loss vs 0.60-0.65 with plain DPO on the same pairs; the
held-out accuracy on the original pairs is the same for both (0.667; the noisy labels cap it at 0.75):
at this size MAPL does not raise it, and the test asserts no more than that it does not lower it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.conftest import HELD_OUT, PROMPTS
from tests.training.preference_files import length_pairs, mapl_file
from tests.training.test_offline_end_to_end import run_train
from tests.training.train_process import train_command

pytestmark = [pytest.mark.slow, pytest.mark.learning, pytest.mark.timeout(600)]
COMMON = ("--steps", "40", "--prompts-per-step", "8", "--learning-rate", "5e-5")


def test_modpo_front_moves_with_the_weight_of_the_trained_objective(
    tmp_path: Path, tiny_policy_dir: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    data = length_pairs(tmp_path / "pairs.jsonl", PROMPTS, per_prompt=4, p_short=0.75)
    out = tmp_path / "sweep"
    run_train(train_command("modpo", out, tiny_policy_dir, data, reward_service.url, *COMMON, "--objective",
                            "brevity", "--weights", "length=1", "--rule-reward", "length:16:0:1", "--rule-reward",
                            "brevity:16", "--sweep", "0.1,0.5,0.9", "--rollout", "generate", "--eval-prompts",
                            str(held_out_file), "--eval-samples", "8"))  # fmt: skip
    points = json.loads((out / "front.json").read_text())["points"]
    before, *trained = [p["means"]["length"] for p in points]
    assert [p["w"] for p in points] == [None, 0.1, 0.5, 0.9]
    assert trained[0] > before + 0.25, (before, trained)  # the length margin dominates at w_k = 0.1
    assert trained[2] < before - 0.25, (before, trained)  # the brevity preference dominates at w_k = 0.9
    assert trained[0] > trained[1] > trained[2], trained


def test_mapl_intra_loss_raises_held_out_intra_accuracy_over_plain_dpo(
    tmp_path: Path, tiny_policy_dir: Path, reward_service: ServiceProcess
) -> None:
    data = mapl_file(tmp_path / "aug.jsonl", length_pairs(tmp_path / "p.jsonl", PROMPTS, per_prompt=4, p_short=0.75))
    held = mapl_file(tmp_path / "held.jsonl",
                     length_pairs(tmp_path / "h.jsonl", HELD_OUT, per_prompt=4, p_short=0.75, seed=1), seed=1)  # fmt: skip
    after = {}
    for name, weight in (("dpo", "0"), ("mapl", "1")):
        out = tmp_path / name
        run_train(train_command("mapl", out, tiny_policy_dir, data, reward_service.url, *COMMON, "--rule-reward",
                                "length", "--intra-weight", weight, "--eval-pairs", str(held)))  # fmt: skip
        rows = [json.loads(line) for line in (out / "eval_pairs.jsonl").read_text().splitlines()]
        assert rows[0]["intra/accuracy"] == 0.5  # untrained: all margins 0
        after[name] = rows[-1]
    dpo, mapl = after["dpo"], after["mapl"]
    assert mapl["intra/accuracy"] > dpo["intra/accuracy"] + 0.1, (dpo, mapl)
    assert mapl["pairs/accuracy"] > 0.5 and dpo["pairs/accuracy"] > 0.5  # both learned the original pairs
    assert mapl["pairs/accuracy"] >= dpo["pairs/accuracy"] - 1 / dpo["pairs/count"], (dpo, mapl)
