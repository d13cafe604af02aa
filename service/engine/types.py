"""Plain data passed between the scorer, the batcher and the backends, and the backend protocol.

No torch here: the batcher and the planner import only this module, so the queue knows a `Batch` and
nothing of the model (TEI's queue knows only its `Batch` the same way).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass(slots=True)
class Unit:
    """Conversations that go to the model together: one, or several sharing a prefix."""

    members: list[int] = field(default_factory=list)  # indices into the planned list
    key: tuple[int, ...] | None = None  # the shared prefix's ids, None when sharing is off or impossible
    prefix_len: int = 0
    max_len: int = 0
    oldest: int = 0  # smallest index, i.e. arrival order
    suffix_tokens: int = 0  # sum over members of (length - prefix_len)

    @property
    def shared(self) -> bool:
        return len(self.members) > 1 and self.prefix_len > 0


@dataclass(frozen=True, slots=True)
class Batch:
    """A finished plan: the conversations of one forward and their units (members index `conversations`).

    Built once by the planner (`planning.plan_next` or `planning.whole_batch`); the backend runs it as
    planned and never regroups it.
    """

    conversations: Sequence[EncodedConversation]
    units: Sequence[Unit]

    def __len__(self) -> int:
        return len(self.conversations)


Timed = tuple[ScoreRows, float, float]
"""A forward's rows, and when it started and ended (`time.perf_counter`)."""


class ScoringBackend(Protocol):
    """What the batcher needs from a backend.

    A backend that runs forwards somewhere else (`engine_process.EngineProcess`) may also offer
    `run_timed(batch) -> Timed`, the times its forward really ran; the batcher then uses those.
    """

    name: str
    packed: bool  # computes real tokens only: the planner budgets sum(tokens), not rows x longest

    def run(self, batch: Batch) -> ScoreRows: ...


def timed_forward(backend: ScoringBackend, batch: Batch) -> Timed:
    """Run `batch`, with the times the forward itself ran: the backend's own (`run_timed`, an engine process
    measuring in its child, without the pipe) where it offers them, else around `run` here."""
    run_timed = getattr(backend, "run_timed", None)
    if run_timed is not None:
        return run_timed(batch)  # type: ignore[no-any-return]
    started = time.perf_counter()
    rows = backend.run(batch)
    return rows, started, time.perf_counter()
