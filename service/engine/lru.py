"""Bounded least-recently-used maps for the two optional caches of the engine.

- `PrefixStateCache` keeps the keys and values a prompt left in the backbone (plus its gate state), so a
  GRPO group whose responses arrive in different batches still computes its prompt once. Bounded in
  bytes: an entry costs `layers x 2 x kv_heads x head_dim x prompt_tokens x bytes_per_value` (3.5 MB for a
  428-token prompt on a 4-layer, 512-hidden bf16 backbone; 56 MB on Llama-3-8B).
- `ResultCache` keeps finished scores keyed by the exact token ids (the model revision is fixed for the
  process), for trainers that re-score the same samples; bounded in entries, off by default.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import torch

from service import metrics
from service.engine.types import ScoreRow

V = TypeVar("V")


class _Lru(Generic[V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        self._items.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, cost: int) -> None:
        if cost > self.capacity:
            return
        if key in self._items:
            self.used -= self._items.pop(key)[1]
        self._items[key] = (value, cost)
        self.used += cost
        while self.used > self.capacity:
            _, (_, evicted_cost) = self._items.popitem(last=False)
            self.used -= evicted_cost

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


PrefixState = tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]
"""(gate hidden state (H,), per-layer (keys, values) each (1, kv_heads, prompt_tokens, head_dim))."""


class PrefixStateCache(_Lru[PrefixState]):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)

    def store(self, key: tuple[int, ...], state: PrefixState) -> None:
        gate, layers = state
        cost = gate.numel() * gate.element_size() + sum(
            k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers
        )
        self.put(key, state, cost)


class ResultCache(_Lru[ScoreRow]):
    def __init__(self, max_items: int) -> None:
        super().__init__(max_items)

    def lookup(self, key: tuple[int, ...]) -> ScoreRow | None:
        row = self.get(key)
        metrics.RESULT_CACHE.labels(outcome="hit" if row is not None else "miss").inc()
        return row

    def store(self, key: tuple[int, ...], row: ScoreRow) -> None:
        self.put(key, row, 1)
