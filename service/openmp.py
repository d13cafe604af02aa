"""The OpenMP settings `paretorm serve` runs its model threads with (and `paretorm bench` its in-process rows).

Before torch loads libgomp (it reads this once): OpenMP workers that sleep instead of spinning when a
parallel region ends. The model's threads share the cores with the event loop, the tokenizer and, on
shared hosts, other processes; spinning workers then steal the time the one doing work needs. Measured
on a 2-core AMD EPYC (AVX512-BF16) under load ~6: one tiny-model item 600-930 ms of compute with the
default policy, 11-23 ms with PASSIVE (1 thread: 12-22 ms). A short spin before sleeping (libgomp's
GOMP_SPINCOUNT; PASSIVE alone spins 0) bridges the microseconds between one op and the next: bench
model, lone request, same 2-core AMD EPYC, compute p50 58 ms PASSIVE, 37 ms with 10 000 spins (ACTIVE:
42 ms); with two CPU-burning processes beside it 120-122 vs 89-105 ms; 32 x 1 throughput 32.0-32.2 vs
32.5-34.7 items/s. An operator's own settings win.
"""

from __future__ import annotations

import os

SERVING_OMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}
OMP_DEFAULTS_MARK = "PARETORM_OMP_DEFAULTS_APPLIED"
"""Names the keys `apply_serving_omp_env` added, so a child that is not paretorm (the bench's vLLM) can drop them."""


def apply_serving_omp_env() -> None:
    """`SERVING_OMP_ENV` where the operator set nothing; call before torch loads libgomp (it reads them once)."""
    added = [key for key in SERVING_OMP_ENV if key not in os.environ]
    os.environ.update({key: SERVING_OMP_ENV[key] for key in added})
    os.environ.setdefault(OMP_DEFAULTS_MARK, ",".join(added))


def without_serving_omp_env(env: dict[str, str]) -> dict[str, str]:
    """`env` less what `apply_serving_omp_env` added: for a child process that is not paretorm."""
    added = env.get(OMP_DEFAULTS_MARK, "").split(",")
    return {key: value for key, value in env.items() if key not in added and key != OMP_DEFAULTS_MARK}
