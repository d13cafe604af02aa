"""Head configuration of an ArmoRM checkpoint, read from its ``config.json``.

The backbone is described by the ordinary transformers config (``LlamaConfig``); this dataclass holds
the keys the ArmoRM heads read (armorm.md §1.6) plus two paretorm additions:

* ``gating_token_pattern`` — the reference hard-codes the Llama-3 ids; small checkpoints with another
  tokenizer need their own, so it is read from config and defaults to the Llama-3 ids [our reading,
  following a public QRM-Gemma re-implementation].
* ``objective_names`` — the real checkpoint does not store them; for 19 objectives we default to the
  published list (armorm.md §2).

``num_objectives`` is required, as in the reference's gating constructor: a silent default of 19 would
build heads that do not match the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ARMORM_OBJECTIVES", "LLAMA3_GATE_PATTERN", "ArmoRMHeadConfig"]

# Head-row order of RLHFlow/ArmoRM-Llama3-8B-v0.1 (armorm.md §2).
ARMORM_OBJECTIVES: tuple[str, ...] = (
    "helpsteer-helpfulness",
    "helpsteer-correctness",
    "helpsteer-coherence",
    "helpsteer-complexity",
    "helpsteer-verbosity",
    "ultrafeedback-overall_score",
    "ultrafeedback-instruction_following",
    "ultrafeedback-truthfulness",
    "ultrafeedback-honesty",
    "ultrafeedback-helpfulness",
    "beavertails-is_safe",
    "prometheus-score",
    "argilla-overall_quality",
    "argilla-judge_lm",
    "code-complexity",
    "code-style",
    "code-explanation",
    "code-instruction-following",
    "code-readability",
)

# <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n in the Llama-3 tokenizer.
LLAMA3_GATE_PATTERN: tuple[int, ...] = (128009, 128006, 78191, 128007, 271)


@dataclass(frozen=True)
class ArmoRMHeadConfig:
    """What the regression layer, transform matrix and gating network need besides the backbone."""

    num_objectives: int
    objective_names: tuple[str, ...]
    gating_temperature: float = 10.0
    gating_hidden_dim: int = 1024
    gating_n_hidden: int = 3
    gating_token_pattern: tuple[int, ...] = LLAMA3_GATE_PATTERN
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.num_objectives < 1:
            raise ValueError(f"num_objectives must be >= 1, got {self.num_objectives}")
        if len(self.objective_names) != self.num_objectives:
            raise ValueError(
                f"objective_names has {len(self.objective_names)} names but num_objectives is "
                f"{self.num_objectives}; give one name per objective in head-row order"
            )
        if len(set(self.objective_names)) != len(self.objective_names):
            raise ValueError(f"objective_names must be unique, got {list(self.objective_names)}")
        if not self.gating_token_pattern:
            raise ValueError("gating_token_pattern must not be empty; omit it to use the Llama-3 ids")
        if self.gating_n_hidden < 0 or self.gating_hidden_dim < 1:
            raise ValueError(
                f"gating_n_hidden must be >= 0 and gating_hidden_dim >= 1, got "
                f"{self.gating_n_hidden} and {self.gating_hidden_dim}"
            )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ArmoRMHeadConfig:
        """Read the head keys from a ``config.json`` mapping (or ``PretrainedConfig.to_dict()``)."""
        if config.get("num_objectives") is None:
            raise ValueError(
                "config has no 'num_objectives': an ArmoRM checkpoint must state how many objective heads "
                "it has (19 for RLHFlow/ArmoRM-Llama3-8B-v0.1); add it to config.json"
            )
        k = int(config["num_objectives"])
        names = config.get("objective_names")
        if names is None:
            names = (
                ARMORM_OBJECTIVES
                if k == len(ARMORM_OBJECTIVES)
                else tuple(f"objective_{i}" for i in range(k))
            )
        pattern = config.get("gating_token_pattern")
        pad = config.get("pad_token_id")
        return cls(
            num_objectives=k,
            objective_names=tuple(str(n) for n in names),
            gating_temperature=float(config.get("gating_temperature", 10.0)),
            gating_hidden_dim=int(config.get("gating_hidden_dim", 1024)),
            gating_n_hidden=int(config.get("gating_n_hidden", 3)),
            gating_token_pattern=_as_ids(pattern) if pattern is not None else LLAMA3_GATE_PATTERN,
            pad_token_id=int(pad) if pad is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The keys ``save_armorm_checkpoint`` writes into ``config.json`` (JSON-ready)."""
        d = asdict(self)
        d["objective_names"] = list(self.objective_names)
        d["gating_token_pattern"] = list(self.gating_token_pattern)
        return d


def _as_ids(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
