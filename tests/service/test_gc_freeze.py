"""`freeze_startup_heap`: start-up garbage is collected, every live object is frozen out of gc's walks."""

from __future__ import annotations

import gc
import weakref

from service.gc_freeze import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


def test_start_up_cycles_are_collected_and_live_objects_frozen() -> None:
    gc.disable()  # no automatic collection may reclaim the cycle before the freeze does
    try:
        cycle = _Node()
        cycle.peer = cycle
        garbage = weakref.ref(cycle)
        del cycle
        kept = _Node()
        assert garbage() is not None
        frozen = freeze_startup_heap()
        assert garbage() is None  # collected, not frozen for the life of the process
        assert frozen == gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())  # in the permanent generation now
        assert gc.collect() == 0
    finally:
        gc.unfreeze()
        gc.enable()
