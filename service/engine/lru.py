"""A bounded least-recently-used map, and the engine's `ResultCache` built on it: finished scores keyed by the
exact token ids (the model revision is fixed for the process), for trainers that re-score the same samples;
bounded in entries, off by default. The other cache of the engine, of prompt states, is
`prefix_cache.PrefixStateCache`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

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


class ResultCache(_Lru[ScoreRow]):
    def __init__(self, max_items: int) -> None:
        super().__init__(max_items)

    def lookup(self, key: tuple[int, ...]) -> ScoreRow | None:
        row = self.get(key)
        metrics.RESULT_CACHE.labels(outcome="hit" if row is not None else "miss").inc()
        return row

    def store(self, key: tuple[int, ...], row: ScoreRow) -> None:
        self.put(key, row, 1)
