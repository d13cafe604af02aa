"""Child servers of a benchmark run, and the glibc malloc tuning they (and the bench itself) run with.

Every child starts in its own session (process group), so stopping it also stops what it spawned (vLLM's
engine-core process); `ProcessSet` stops all of them in `finally` and again at interpreter exit, so a
crashed or interrupted run leaves nothing behind.

glibc tuning (`service.malloc`, environment.md §8): the children start with its variables in their
environment, as the Docker image does; the bench process applies the same values to itself with
`mallopt`, as `paretorm serve` does, so its in-process ceiling measures the same allocator behaviour.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildServer:
    """One HTTP server child process: started in its own process group, ready when `health_path` is 200."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        health_path: str,
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.health_path = health_path
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_after_s: float | None = None
        self._started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._started_at = time.monotonic()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(
                    f"{self.name} exited with code {code} before it was ready; see {self.log_path}"
                )
            try:
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    self.ready_after_s = time.monotonic() - self._started_at
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} was not ready after {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after `grace_s`."""
        process = self.process
        if process is None or process.poll() is not None:
            self._kill_group(signal.SIGKILL)  # the leader is gone; its children may not be
            return
        self._kill_group(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        self._kill_group(signal.SIGKILL)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass

    def _kill_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)  # the child is its session's leader: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass


def group_cpu_seconds(groups: set[int]) -> float:
    """CPU seconds (user + system) used so far by every live process in the process groups `groups`."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) in groups:  # state, ppid, pgrp, ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class ProcessSet:
    """The children of one run; `stop_all` is idempotent and also registered with `atexit`."""

    def __init__(self) -> None:
        self._children: list[ChildServer] = []
        atexit.register(self.stop_all)

    def add(self, child: ChildServer) -> ChildServer:
        self._children.append(child)
        return child

    def stop(self, child: ChildServer) -> None:
        child.stop()
        if child in self._children:
            self._children.remove(child)

    def settle(self, *, idle_cores: float = 0.1, window_s: float = 0.25, timeout_s: float = 5.0) -> float:
        """Wait until the children together use less than `idle_cores` (over `window_s`); the seconds waited.

        vLLM's CPU server keeps about one core busy for ~1 s after its load ends (sampled each second after
        a 32 x 1 run: 0.99 cores, then 0.01; paretorm 0.01 at once; 2-core Intel Xeon AMX-BF16), so whatever
        is measured right after it runs on one core for that second: paretorm's GRPO rounds that followed a
        vLLM round ran at 45-50 items/s, those that did not at 72-82. Call it before such a measurement.
        """
        if not os.path.isdir("/proc"):
            return 0.0
        groups = {child.process.pid for child in self._children if child.process is not None}
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            before = group_cpu_seconds(groups)
            time.sleep(window_s)
            if group_cpu_seconds(groups) - before < idle_cores * window_s:
                break
        return time.monotonic() - started

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop()

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        atexit.unregister(self.stop_all)
