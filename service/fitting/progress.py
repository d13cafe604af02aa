"""A dependency-free progress bar on stderr for long embedding runs (no tqdm needed).

Redraws one line at most every ``min_interval_s``; prints nothing when disabled, so tests and pipes stay
quiet. Resumed runs start the bar at the number of items already cached.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval_s: float = 0.5,
    ) -> None:
        self.total, self.desc, self.done = total, desc, initial
        self._enabled = enabled
        self._stream = stream if stream is not None else sys.stderr
        self._interval = min_interval_s
        self._start = time.monotonic()
        self._start_done = initial
        self._last_draw = 0.0
        self._draw(force=True)

    def update(self, n: int) -> None:
        self.done += n
        self._draw(force=self.done >= self.total)

    def close(self) -> None:
        self._draw(force=True)
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not self._enabled or (not force and now - self._last_draw < self._interval):
            return
        self._last_draw = now
        elapsed = max(now - self._start, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        filled = int(pct / 5)
        eta = f"{(self.total - self.done) / rate:6.0f}s" if rate > 0 else "     --"
        self._stream.write(
            f"\r{self.desc} [{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} "
            f"({pct:5.1f}%) {rate:6.1f} it/s eta {eta}"
        )
        self._stream.flush()
