"""Stop vLLM's engine processes when the service dies, however it dies (SIGKILL, the OOM killer).

Why: with its engine in its own process (CUDA's default, tensor parallelism, or
`VLLM_ENABLE_V1_MULTIPROCESSING=1`), vLLM spawns an EngineCore process, with workers under it, and the
EngineCore watches nothing of its parent. A service killed with SIGKILL left it running, holding 2.1 GB of
host memory on a CPU (a GPU's memory on a GPU, which the restarted service then cannot get). vLLM's workers
watch the EngineCore, not the service.

How: `guard` starts this module as a small process (no torch, no vLLM) holding the read end of a pipe
whose write end only the service holds. The kernel closes that end when the service dies, for any reason;
the guard reads end-of-file and sends SIGKILL to each process it was handed, unless that process id now
belongs to another process (its start time is compared). When the service exits normally, vLLM has shut
its engine down already and the guard finds nothing left to kill. Linux only (`/proc`); elsewhere
`guard` does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Guard:
    process: subprocess.Popen[bytes]
    write_fd: int  # held open while the guarded processes are wanted: its closing is the guard's signal

    def release(self) -> None:
        """End the guard now, as this process's death would: it kills what still runs of its processes."""
        _LIVE.remove(self)
        os.close(self.write_fd)
        self.process.wait(timeout=10)


_LIVE: list[Guard] = []  # this process's guards, held for its life unless released (no caller must keep one)


def stat_fields(pid: int) -> list[str] | None:
    """`/proc/<pid>/stat` from field 3 (the state) on, past the command name, which may hold spaces and
    parentheses; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), None if gone."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def descendants(pid: int | None = None) -> set[int]:
    """Every live process below `pid` (this process by default), at any depth; none without `/proc`."""
    root = os.getpid() if pid is None else pid
    if not Path("/proc/self/stat").exists():
        return set()
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in parents.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def guard(pids: Iterable[int]) -> Guard | None:
    """Start a guard that SIGKILLs `pids` once this process is gone; None if there is nothing to guard (no
    live pid, or no `/proc` to read start times from)."""
    started = {pid: start_time(pid) for pid in pids}
    targets = [f"{pid}:{tick}" for pid, tick in sorted(started.items()) if tick is not None]
    if not targets:
        return None
    read_fd, write_fd = os.pipe()  # both ends non-inheritable: only `pass_fds` hands the read end on
    process = subprocess.Popen(
        [sys.executable, "-m", "service.orphan_guard", str(read_fd), *targets],
        pass_fds=(read_fd,), start_new_session=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(read_fd)
    _LIVE.append(Guard(process, write_fd))
    return _LIVE[-1]


def start_guarded(start: Callable[[], T]) -> tuple[T, Guard | None]:
    """`start()` (vLLM's `LLM(...)`, say), with a guard over every process it left running below this one;
    no guard where it started none (vLLM's engine in this process)."""
    before = descendants()
    started = start()
    return started, guard(descendants() - before)


def _wait_then_kill(read_fd: int, targets: list[str]) -> None:
    while os.read(read_fd, 4096):  # the service never writes: this returns b"" when it is gone
        pass
    for target in targets:
        pid, tick = (int(part) for part in target.split(":"))
        if start_time(pid) == tick:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the service must not end the guard
    _wait_then_kill(int(sys.argv[1]), sys.argv[2:])
