"""Plain multi-label sequence-classification reward models behind the ArmoRM output shape.

Any ``*ForSequenceClassification`` checkpoint whose ``num_labels`` outputs are per-objective rewards
(names from ``id2label``). There is no gate: ``gating`` and ``coefficients`` are the uniform ``1/K``
and ``score`` is the mean reward, so callers can treat both kinds alike.

Pooling is what the transformers model does itself (the last non-pad token, given
``config.pad_token_id``); pad on the right with that id. ``hidden_states``/``heads`` are not offered:
the head layout differs between architectures, so engines run ``forward`` for this kind.

Precision: the whole classifier, head included, runs in the load dtype (the transformers forward
feeds the head with backbone-dtype states); the logits are cast to float32.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PretrainedConfig

from .errors import ModelInputError
from .outputs import RewardOutput

__all__ = ["SequenceClassificationRewardModel", "label_names"]


def label_names(config: PretrainedConfig) -> tuple[str, ...]:
    """Objective names from ``id2label`` in index order (``LABEL_i`` style names are kept as given)."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return tuple(id2label.get(i, f"objective_{i}") for i in range(int(config.num_labels or 0)))


class SequenceClassificationRewardModel(nn.Module):
    """A transformers sequence classifier whose ``K`` logits are the per-objective rewards."""

    kind = "sequence-classification"
    needs_gate_pattern = False
    gating_token_pattern: tuple[int, ...] = ()

    def __init__(self, config: PretrainedConfig, *, attn_implementation: str | None = None) -> None:
        super().__init__()
        if not config.num_labels or config.num_labels < 1:
            raise ValueError(
                f"a sequence-classification reward model needs num_labels >= 1, got {config.num_labels}"
            )
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.config = config
        self.classifier = AutoModelForSequenceClassification.from_config(config, **kwargs)
        self._names = label_names(config)

    @property
    def objective_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def pad_token_id(self) -> int | None:
        pad = self.config.pad_token_id
        return int(pad) if pad is not None else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> RewardOutput:
        """Right-padded ``(B, L)`` ids to per-objective rewards with a uniform gate and the mean score."""
        if self.pad_token_id is None and input_ids.shape[0] != 1:
            raise ModelInputError(
                "the checkpoint's config has no pad_token_id, so padded rows cannot be pooled; score one "
                "sequence at a time or set pad_token_id in config.json"
            )
        logits = self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits
        rewards = logits.float()  # (B, K)
        k = rewards.shape[-1]
        uniform = torch.full_like(rewards, 1.0 / k)
        return RewardOutput(
            rewards=rewards, gating=uniform, coefficients=uniform.clone(), score=rewards.mean(-1)
        )
