"""MODPO's margin rewards: every service objective of each pair's two responses, scored once, kept on disk.

The margins ``r_{-k}(x, y_w)`` and ``r_{-k}(x, y_l)`` do not change while the policy trains, so they are
fetched from the service once per pair (batched: one `score_groups` group per pair, both responses) and
written to a JSON cache keyed by the service's model revision. A restart, ``--resume`` or another member of
a sweep reads them back and sends nothing; a cache from another revision is discarded (rewards of two
models are not comparable), and pairs added to the file are the only ones scored. The cache is saved after
every batch, so a run killed while scoring resumes scoring where it stopped.

Rule rewards (``--rule-reward``) are not cached: they are a function of the response's token count,
computed locally in microseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from service.training.data import Messages

logger = logging.getLogger(__name__)

BATCH_PAIRS = 32
ScoreFn = Callable[[list[Messages], list[list[str]]], np.ndarray]
"""(prompts [B], responses [B][2]) -> service rewards [B, 2, K]."""


def pair_key(prompt: Messages, chosen: str, rejected: str) -> str:
    return hashlib.sha256(json.dumps([prompt, chosen, rejected], sort_keys=True).encode()).hexdigest()[:32]


class MarginCache:
    """``scores[key] = [[K rewards of y_w], [K rewards of y_l]]`` for one revision and objective list."""

    def __init__(self, path: Path, revision: str | None, objectives: Sequence[str]) -> None:
        self.path, self.revision, self.objectives = Path(path), revision, list(objectives)
        self.scores: dict[str, list[list[float]]] = {}
        self.scored_now = 0
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("revision") == revision and stored.get("objectives") == self.objectives:
                self.scores = stored["scores"]
            else:
                logger.warning("%s holds rewards of revision %s, the service serves %s: scoring again",
                               self.path, stored.get("revision"), revision)  # fmt: skip

    def fill(self, pairs: Sequence[tuple[Messages, str, str]], score: ScoreFn, *, save: bool = True) -> np.ndarray:
        """Rewards [P, 2, K] of ``pairs`` (prompt, chosen, rejected), scoring only the missing ones."""
        keys = [pair_key(*pair) for pair in pairs]
        first = {key: i for i, key in reversed(list(enumerate(keys)))}
        missing = [first[key] for key in dict.fromkeys(keys) if key not in self.scores]
        for start in range(0, len(missing), BATCH_PAIRS):
            part = missing[start : start + BATCH_PAIRS]
            values = score([pairs[i][0] for i in part], [[pairs[i][1], pairs[i][2]] for i in part])
            for i, row in zip(part, values, strict=True):
                self.scores[keys[i]] = row.tolist()
            self.scored_now += len(part)
            if save:
                self.save()
        if missing:
            logger.info("margin rewards: scored %d pairs, %d from %s", len(missing), len(keys) - len(missing), self.path)
        return np.array([self.scores[key] for key in keys], dtype=np.float64).reshape(len(keys), 2, len(self.objectives))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".tmp")
        staging.write_text(json.dumps({"revision": self.revision, "objectives": self.objectives, "scores": self.scores}))
        os.replace(staging, self.path)
