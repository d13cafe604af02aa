"""Micro-benchmark of `pama_combine` on a 4096 x 19 batch (not collected by pytest; timing is not a test).

Run: ``.venv/bin/python tests/objectives/bench_pama.py``. Prints the best and median of repeated calls
for array input (the trainer path) and nested-list input (the JSON path, which adds conversion).

With glibc's default malloc, every fresh 600 KB intermediate (the Noon clip, the ratio mask) is mmapped
and unmapped per call, which roughly doubles the noon/ratio timings; run with the service's malloc
settings (``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
MALLOC_TOP_PAD_=268435456``, see environment.md §8) to measure the arithmetic alone.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from service.objectives.pama import pama_combine  # noqa: E402


def timing(fn, repeats: int) -> str:
    """Best and median of ``repeats`` calls: best shows the cost, median how noisy the machine is."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return f"best {min(times) * 1e3:.3f} ms, median {statistics.median(times) * 1e3:.3f} ms"


def main() -> None:
    a = np.random.default_rng(0).normal(size=(4096, 19))
    ratios = np.random.default_rng(1).uniform(0.7, 1.4, size=4096)
    nested = a.tolist()
    lines = [
        f"array [4096, 19]:               {timing(lambda: pama_combine(a), 200)}",
        f"array + noon + ratio mask:      {timing(lambda: pama_combine(a, noon=True, ratios=ratios), 200)}",
        f"nested list (JSON path):        {timing(lambda: pama_combine(nested), 20)}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
