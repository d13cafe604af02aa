"""Backends for the engine-process tests, built in the spawned child (so they live in an importable module).

`TokenBackend` scores a conversation as its first token id, and a few first ids ask it to misbehave the way a
real forward can: raise, raise something that cannot be pickled, take its time, or kill its process.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from service.engine.types import Batch, ScoreRows

RAISE = -1  # the batch raises ValueError
RAISE_UNPICKLABLE = -2  # the batch raises an exception holding a lock (pickle refuses it)
SLOW = -3  # the batch takes 0.3 s
EXIT = -4  # the process exits mid-batch


class UnpicklableError(RuntimeError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TokenBackend:
    name = "token"
    packed = True
    forward = "fake forward"
    attention_kernel = None

    def run(self, batch: Batch) -> ScoreRows:
        firsts = [conversation.input_ids[0] for conversation in batch.conversations]
        if RAISE in firsts:
            raise ValueError(f"bad batch of {len(firsts)}")
        if RAISE_UNPICKLABLE in firsts:
            raise UnpicklableError("holds a lock")
        if SLOW in firsts:
            time.sleep(0.3)
        if EXIT in firsts:
            os._exit(3)
        values = np.array(firsts, dtype=np.float64)
        rewards = np.stack([values, -values], axis=1)
        ones = np.ones_like(rewards)
        return ScoreRows(rewards, ones, ones, values, computed_tokens=os.getpid())


def build_token_backend() -> TokenBackend:
    return TokenBackend()


def build_broken_backend() -> TokenBackend:
    raise FileNotFoundError("no checkpoint at /nowhere: pass --model DIR")
