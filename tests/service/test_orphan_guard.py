"""`service.orphan_guard`: the processes handed to a guard die with the process that started it, however it
dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from service.orphan_guard import descendants, guard, start_time
from tests.support.processes import alive, gone_within

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
SERVICE = r"""
import subprocess, sys, time
from service.orphan_guard import guard
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
watch = guard({engine.pid})
print(engine.pid, watch.process.pid, flush=True)
time.sleep(600)
"""


def test_a_guarded_process_dies_with_its_sigkilled_starter() -> None:
    service = subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, text=True)
    try:
        engine, watch = (int(pid) for pid in service.stdout.readline().split())  # type: ignore[union-attr]
        assert alive(engine) and alive(watch)
        assert {engine, watch} <= descendants(service.pid)
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=10)
        assert gone_within([engine, watch], 10), "the engine outlived the service that started it"
    finally:
        service.kill()


def test_a_pid_that_now_names_another_process_is_left_alone() -> None:
    sleeper = subprocess.Popen(SLEEPER)
    try:
        read_fd, write_fd = os.pipe()
        wrong_tick = (start_time(sleeper.pid) or 0) + 1  # the pid was reused since the guard was started
        watch = subprocess.Popen([sys.executable, "-m", "service.orphan_guard", str(read_fd),
                                  f"{sleeper.pid}:{wrong_tick}"], pass_fds=(read_fd,))  # fmt: skip
        os.close(read_fd)
        os.close(write_fd)  # what the starter's death does
        assert watch.wait(timeout=10) == 0
        assert alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_descendants_reach_grandchildren_and_only_them() -> None:
    spawn = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()"
    spawner = subprocess.Popen([sys.executable, "-c", spawn, *SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(spawner.stdout.readline())  # type: ignore[union-attr]
        assert descendants(spawner.pid) == {grandchild}
        assert {spawner.pid, grandchild} <= descendants()
        assert os.getpid() not in descendants()
    finally:
        os.kill(grandchild, signal.SIGKILL)
        spawner.wait(timeout=10)


def test_release_kills_what_still_runs_and_ends_the_guard() -> None:
    sleeper = subprocess.Popen(SLEEPER)
    try:
        watch = guard({sleeper.pid})
        assert watch is not None
        watch.release()  # what a closed vLLM rollout does once vLLM's own shutdown has run
        assert watch.process.returncode == 0
        assert gone_within([sleeper.pid], 10)
    finally:
        sleeper.kill()
        sleeper.wait()
