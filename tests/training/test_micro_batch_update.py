"""Micro-batching a step does not change the update: MODPO's and MAPL's real `train_step`, split or whole.

Each trainer is built twice on the tiny policy over the same data, once with ``--micro-batch-sequences``
large enough for the whole step and once small enough that the step's rows run as >= 3 micro-batches of
unequal sizes (`OfflineTrainer.micro_batches`); one `train_step` on the same rows must give the same loss,
the same accumulated gradient (read just before the optimiser steps) and the same change of every
parameter. Before the step the policy is moved off the reference by the same seeded noise in both, so the
log-ratios ``h`` are not all zero (at the reference every MAPL margin is 0 and its loss does not depend on
the shares at all). Margins are trainer-side rule rewards: the property needs no reward service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from service.training.config import RunConfig
from service.training.distributed import World
from service.training.mapl import MaplTrainer
from service.training.modpo import ModpoTrainer
from service.training.offline_config import MaplConfig, ModpoConfig
from tests.training.conftest import PROMPTS
from tests.training.preference_files import length_pairs, mapl_file

WHOLE = 10_000
"""``--micro-batch-sequences`` that holds every step here in one forward."""


@pytest.fixture
def one_thread() -> Any:
    """One intra-op thread: the tiny policy's ops take microseconds (test_offline_end_to_end.run_train)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(policy: Path, data: Path, out: Path, rows: int, *extra_rules: str) -> RunConfig:
    """No gradient clipping (``max_grad_norm`` 0): a gradient scaled wrong stays scaled wrong."""
    return RunConfig(policy=str(policy), prompts=data, out=out, steps=1, prompts_per_step=rows,
                     rollout="generate", rule_rewards=["length:16:0:1", *extra_rules],
                     weights={"brevity": 0.6, "length": 0.4}, max_grad_norm=0.0, progress=False)  # fmt: skip


Tensors = dict[str, torch.Tensor]


def _one_step(trainer: Any, rows: int) -> tuple[dict[str, Any], Tensors, Tensors]:
    """(the step's record, the gradients the optimiser stepped with, each parameter's change in the step).

    The optimiser is plain SGD (lr 1) here, so the change is minus the gradient: AdamW's first step,
    ``lr g / (|g| + eps)``, turns float noise in gradient elements near 0 (|g| ~ eps) into differences of
    ~1e-3 lr between any two ways of summing them (measured), a property of Adam, not of micro-batching.
    """
    params = dict(trainer.model.named_parameters())
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for p in params.values():
            p.add_(0.05 * p.std() * torch.randn_like(p))  # off the reference: h != 0
    before = {n: p.detach().clone() for n, p in params.items()}
    grads: dict[str, torch.Tensor] = {}
    trainer.optimizer = torch.optim.SGD(list(params.values()), lr=1.0)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    trainer.optimizer.register_step_pre_hook(
        lambda *_: grads.update({n: p.grad.clone() for n, p in params.items() if p.grad is not None}))
    record = trainer.train_step(1, trainer.prompts[:rows])
    return record, grads, {n: p.detach() - before[n] for n, p in params.items()}


def _assert_same_update(split: Any, whole: Any, rows: int, metrics: tuple[str, ...]) -> None:
    """``split`` runs ``rows`` in >= 3 micro-batches, ``whole`` in one; both steps must agree (fp32, 1e-5)."""
    parts = [len(p) for p in split.micro_batches("train", split.prompts[:rows])]
    assert len(parts) >= 3 and len(set(parts)) > 1, parts  # several, of unequal sizes
    assert len(list(whole.micro_batches("train", whole.prompts[:rows]))) == 1
    got, got_grads, got_change = _one_step(split, rows)
    want, want_grads, want_change = _one_step(whole, rows)
    for key in ("loss", "grad_norm", *metrics):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    assert got_grads.keys() == want_grads.keys() == want_change.keys()  # every parameter has a gradient
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-5 * float(grad.abs().max()))
        # the change is the gradient up to the rounding of p - g (p up to ~1: ~1e-7)
        torch.testing.assert_close(got_change[name], want_change[name], rtol=1e-5,
                                   atol=1e-5 * float(grad.abs().max()) + 2e-7)  # fmt: skip
        assert float(want_change[name].abs().max()) > 0, name


def test_modpo_step_in_micro_batches_equals_the_one_forward_step(
    tmp_path: Path, tiny_policy_dir: Path, one_thread: None
) -> None:
    data = length_pairs(tmp_path / "pairs.jsonl", PROMPTS[:5], per_prompt=1, p_short=0.6)
    run = _run(tiny_policy_dir, data, tmp_path / "whole", 5, "brevity:16")
    whole = ModpoTrainer(run, ModpoConfig(objective="brevity", micro_batch_sequences=WHOLE), World())
    run = _run(tiny_policy_dir, data, tmp_path / "split", 5, "brevity:16")
    split = ModpoTrainer(run, ModpoConfig(objective="brevity", micro_batch_sequences=4), World())  # 2+2+1
    _assert_same_update(split, whole, 5, ("rewards/margins", "modpo/logits", "modpo/margin_term"))


def test_mapl_step_in_micro_batches_equals_the_one_forward_step(
    tmp_path: Path, tiny_policy_dir: Path, one_thread: None
) -> None:
    pairs = length_pairs(tmp_path / "pairs.jsonl", PROMPTS[:5], per_prompt=1, p_short=0.6)
    data = mapl_file(tmp_path / "aug.jsonl", pairs)
    cfg = {"intra_weight": 0.7, "inter_weight": 0.5}
    whole = MaplTrainer(_run(tiny_policy_dir, data, tmp_path / "whole", 5),
                        MaplConfig(**cfg, micro_batch_sequences=WHOLE), World())  # fmt: skip
    budget = 2 * len(whole.encode("train", whole.prompts[0]))  # 10 sequences an example: 2+2+1 examples
    split = MaplTrainer(_run(tiny_policy_dir, data, tmp_path / "split", 5),
                        MaplConfig(**cfg, micro_batch_sequences=budget), World())  # fmt: skip
    counts = split.kind_counts(split.prompts[:5])
    assert counts["intra"] and counts["inter"], counts  # every kind of pair is in the step
    logged = ("pairs/loss", "intra/loss", "inter/loss", "intra/accuracy", "inter/count", "rewards/margins")
    _assert_same_update(split, whole, 5, logged)
