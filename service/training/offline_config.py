"""Settings of the offline preference trainers, MODPO and MAPL (torch-free, checked before anything loads).

Both read a preference file through ``--prompts`` (alias ``--pairs``) and train on fixed pairs, so a run
needs no rollouts; the rollout engine is only built to evaluate (``--eval-prompts``, MODPO's front).
``--prompts-per-step`` counts pairs per step (MAPL: original pairs, each with the pairs built from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.training.config import ConfigError, _positive

MIN_TRAINED_WEIGHT = 0.01
"""MODPO divides by ``w_k``; below this the loss is ~100x sharper than DPO's and training diverges."""


MICRO_BATCH_SEQUENCES = 16
"""Sequences per forward and backward (gradients accumulate over a step's micro-batches); see offline.py."""


def _common_checks(beta: float, max_response_tokens: int, micro_batch_sequences: int) -> None:
    _positive("beta", beta)
    if not isinstance(max_response_tokens, int) or max_response_tokens < 1:
        raise ConfigError(f"--max-response-tokens must be an integer >= 1 (got {max_response_tokens!r})")
    if not isinstance(micro_batch_sequences, int) or micro_batch_sequences < 1:
        raise ConfigError(f"--micro-batch-sequences must be an integer >= 1 (got {micro_batch_sequences!r}); "
                          f"{MICRO_BATCH_SEQUENCES} is the default")  # fmt: skip


@dataclass
class ModpoConfig:
    """MODPO (algorithms.md §2): DPO on objective ``objective``'s pairs with the other objectives as margins."""

    objective: str | None = None
    """The objective the preference file ranks (its weight is ``w_k`` in ``--weights``)."""
    beta: float = 0.1
    max_response_tokens: int = 256
    micro_batch_sequences: int = MICRO_BATCH_SEQUENCES
    sweep: tuple[float, ...] = ()
    """``w_k`` values: one model each, then the front over ``--eval-prompts`` (``OUT/front.json|png``)."""
    front_objectives: tuple[str, ...] = ()
    margin_cache: Path | None = None
    """Where the margin rewards are cached (default ``OUT/margin_cache.json``); shared by sweep members."""
    cache_root: Path | None = field(default=None, repr=False)
    """Where the reference log-probs are cached (default ``OUT``; the sweep points its members at its own)."""

    def __post_init__(self) -> None:
        _common_checks(self.beta, self.max_response_tokens, self.micro_batch_sequences)
        for w in self.sweep:
            if not math.isfinite(w) or not MIN_TRAINED_WEIGHT <= w <= 1:
                raise ConfigError(f"--sweep {w}: each value is the trained objective's weight, in [{MIN_TRAINED_WEIGHT}, 1]")

    def check_run(self, run: Any) -> None:
        """The weight checks, instant at the command line: ``w_k`` present and not near zero."""
        if not self.objective:
            raise ConfigError("modpo needs --objective NAME: the objective the preference file ranks "
                              "(give its weight in --weights NAME=W,...)")  # fmt: skip
        if not self.sweep and self.objective not in run.weights:
            raise ConfigError(f"--objective {self.objective} has no weight: add {self.objective}=W to --weights "
                              "(e.g. --weights helpfulness=0.6,verbosity=0.4)")  # fmt: skip
        trained = run.weights.get(self.objective, 1.0)
        if not self.sweep and trained < MIN_TRAINED_WEIGHT:
            raise ConfigError(
                f"--weights {self.objective}={trained:g}: MODPO divides the loss by the trained objective's weight, "
                f"so it must be >= {MIN_TRAINED_WEIGHT} (at 0 the preference data is ignored: use a margin-only "
                "objective elsewhere, or raise the weight)"
            )
        if any(w < 0 for w in run.weights.values()):
            raise ConfigError("--weights: MODPO's weights lie on the simplex; give non-negative weights")


def sweep_weights(weights: dict[str, float], objective: str, trained: float) -> dict[str, float]:
    """``w_k = trained`` and the other weights rescaled to sum to ``1 - trained`` (equal split if all zero)."""
    others = {n: w for n, w in weights.items() if n != objective}
    total = sum(others.values())
    if not others:
        return {objective: trained}
    share = {n: (w / total if total > 0 else 1 / len(others)) for n, w in others.items()}
    return {objective: trained, **{n: (1 - trained) * s for n, s in share.items()}}


@dataclass
class MaplConfig:
    """MAPL (algorithms.md §7): DPO on ``paretorm augment`` output with the intra- and inter-sample losses."""

    beta: float = 0.1
    intra_weight: float = 1.0
    inter_weight: float = 0.0
    """[our reading] weight of the inter-sample loss; 0 (off) by default, the paper's form is unknown."""
    max_response_tokens: int = 256
    micro_batch_sequences: int = MICRO_BATCH_SEQUENCES
    eval_pairs: Path | None = None
    """A held-out augmented file: implicit-reward accuracy per kind before and after (``OUT/eval_pairs.jsonl``)."""

    def __post_init__(self) -> None:
        _common_checks(self.beta, self.max_response_tokens, self.micro_batch_sequences)
        _positive("intra_weight", self.intra_weight, allow_zero=True)
        _positive("inter_weight", self.inter_weight, allow_zero=True)
        if self.eval_pairs is not None and not Path(self.eval_pairs).is_file():
            raise ConfigError(f"--eval-pairs {self.eval_pairs}: no such file (a paretorm augment output)")

    def check_run(self, run: Any) -> None:
        """Nothing beyond the dataclass checks; present so every offline config is checked the same way."""
