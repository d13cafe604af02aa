"""Micro-benchmark of `pama_combine` on a 4096 x 19 batch (not collected by pytest; timing is not a test).

Run: ``.venv/bin/python tests/objectives/bench_pama.py``. Prints the median of repeated calls for
array input (the trainer path) and nested-list input (the JSON path, which adds conversion).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from service.objectives.pama import pama_combine  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    a = np.random.default_rng(0).normal(size=(4096, 19))
    ratios = np.random.default_rng(1).uniform(0.7, 1.4, size=4096)
    nested = a.tolist()
    lines = [
        f"array [4096, 19]:               {median_ms(lambda: pama_combine(a), 200):.3f} ms",
        f"array + noon + ratio mask:      {median_ms(lambda: pama_combine(a, noon=True, ratios=ratios), 200):.3f} ms",
        f"nested list (JSON path):        {median_ms(lambda: pama_combine(nested), 20):.3f} ms",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
