"""Plain data passed between the scorer, the batcher and the backends (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class EncodedConversation:
    """A tokenised conversation, ready for the model.

    `prefix_len` is how many leading tokens belong to the prompt (through the assistant header): items whose
    first `prefix_len` tokens are identical share that computation. 0 means "never share".
    `gate_index` is ArmoRM's gate token (-1 for models without gating).
    """

    input_ids: tuple[int, ...]
    gate_index: int
    prefix_len: int
    truncated_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def prefix_key(self) -> tuple[int, ...] | None:
        if self.prefix_len <= 0 or self.prefix_len >= len(self.input_ids):
            return None
        return self.input_ids[: self.prefix_len]


@dataclass(frozen=True, slots=True)
class ScoreRows:
    """Model outputs for a batch, as float64 numpy arrays (rows align with the input order)."""

    rewards: np.ndarray  # (B, K)
    gating: np.ndarray  # (B, K)
    coefficients: np.ndarray  # (B, K)
    score: np.ndarray  # (B,)
    computed_tokens: int = 0

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def take(self, index: int) -> ScoreRow:
        return ScoreRow(
            rewards=self.rewards[index],
            gating=self.gating[index],
            coefficients=self.coefficients[index],
            score=float(self.score[index]),
        )


@dataclass(frozen=True, slots=True)
class ScoreRow:
    rewards: np.ndarray  # (K,)
    gating: np.ndarray  # (K,)
    coefficients: np.ndarray  # (K,)
    score: float
