"""Wall-clock timings of the `deploy_docker` steps, printed at the end of the run (conftest.py).

The issue asks for what was built and how long each step took; the README quotes these lines. A step is
recorded when it ends, failed or not, so a slow failure still shows where the time went.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StepTimer:
    """Named steps in the order they ran, plus free-form lines about what was built."""

    steps: list[tuple[str, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        finally:
            self.steps.append((name, time.monotonic() - start, outcome))

    def report(self) -> list[str]:
        width = max((len(name) for name, _, _ in self.steps), default=0)
        lines = [f"{name:<{width}}  {seconds:7.1f} s  {outcome}" for name, seconds, outcome in self.steps]
        if self.steps:
            lines.append(f"{'total':<{width}}  {sum(s for _, s, _ in self.steps):7.1f} s")
        return [*self.notes, *lines]


TIMER = StepTimer()
