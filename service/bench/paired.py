"""The headline ratios again, as alternating rounds of the two engines on fresh items.

The scenarios measure each engine once, one after the other, minutes apart. On the shared 2-core VMs this
project runs on, the host's speed drifts more than the differences being measured: three runs of the same
code on one Intel Xeon (AMX-BF16) within 15 minutes gave paretorm HTTP 32 x 1 at 43.8, 61.8 and 39.9 items/s
and vLLM at 44.2, 43.0 and 52.0, so the ratio of two sequential figures carried the drift (0.77-1.44). Here
each round runs both engines back to back on its own fresh items, in alternating order, so two rounds run
A B B A: the geometric mean of their two ratios cancels a steady drift exactly, and the reported ratio is the
median of those two-round means (robust to one round that a burst from another process hit).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.bench.loadgen import Target
from service.bench.scenarios_http import throughput


@dataclass(frozen=True)
class Side:
    """One engine's half of a pairing: its target and how to build a round's fresh units."""

    target: Target
    units: Callable[[], Sequence[Any]]  # called once per round: never-seen work
    concurrency: int
    per_request: int


@dataclass(frozen=True)
class Pairing:
    name: str  # the ratio's name, "ours / theirs"
    ours: Side
    theirs: Side


def _items_per_s(side: Side) -> float:
    row = throughput(side.target, side.units(), concurrency=side.concurrency, per_request=side.per_request)
    if row["errors"] or not row["items_per_s"]:
        raise RuntimeError(f"paired rounds: {side.target.name}: {row.get('first_error')}")
    return float(row["items_per_s"])


def paired_ratios(
    pairings: Sequence[Pairing], rounds: int, measure: Callable[[Side], float] = _items_per_s,
    settle: Callable[[], object] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """Per pairing: each round's items/s of both engines, the median of the two-round ratios, the rounds' spread.

    `measure(side)` runs one round of one engine (closed-loop HTTP by default) and returns its items/s;
    `settle()` runs before each (`ProcessSet.settle`: the engine measured last has gone idle)."""
    out: dict[str, dict[str, Any]] = {}
    for pairing in pairings:
        ours: list[float] = []
        theirs: list[float] = []
        for r in range(rounds):
            order = (ours, pairing.ours), (theirs, pairing.theirs)
            for rates, side in order if r % 2 == 0 else order[::-1]:
                settle()
                rates.append(measure(side))
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        pairs = [math.prod(ratios[i : i + 2]) ** (1 / len(ratios[i : i + 2])) for i in range(0, len(ratios), 2)]
        out[pairing.name] = {
            "rounds": rounds,
            "median": round(statistics.median(pairs), 3) if pairs else None,
            "min": round(min(ratios), 3) if ratios else None,
            "max": round(max(ratios), 3) if ratios else None,
            "ours_items_per_s": [round(x, 1) for x in ours],
            "theirs_items_per_s": [round(x, 1) for x in theirs],
        }
    return out
