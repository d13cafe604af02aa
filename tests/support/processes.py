"""Whether processes still run, read from `/proc` (Linux), for tests that kill services and their children."""

from __future__ import annotations

import time
from collections.abc import Iterable

from service.orphan_guard import stat_fields


def alive(pid: int) -> bool:
    """Running, not a zombie left for a parent (or a container's PID 1) that does not reap it."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def gone_within(pids: Iterable[int], seconds: float) -> bool:
    """Whether every one of `pids` has stopped running within `seconds`."""
    pending = list(pids)
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pending):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
