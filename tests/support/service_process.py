"""Start real `paretorm serve` processes on loopback ports for tests (fakes of nothing: the real thing).

`ServiceProcess` runs the console script in a subprocess, waits for `/health/ready`, and stops it with
SIGTERM (the graceful drain) or SIGKILL. The same object can `restart()` on the same port, which the
client's resilience tests use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from service.bench.processes import free_port

PARETORM = str(Path(sys.executable).with_name("paretorm"))


class ServiceProcess:
    def __init__(
        self,
        model_dir: Path | None,
        *,
        port: int | None = None,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        launcher: list[str] | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.launcher = launcher or [PARETORM]  # e.g. [python, -m, a test module that wraps the CLI]
        self.port = port or free_port()
        self.args = args or []
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout_s: float = 90.0) -> ServiceProcess:
        command = [*self.launcher, "serve", "--port", str(self.port), *self.args]
        if self.model_dir is not None:
            command += ["--model", str(self.model_dir)]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"paretorm serve exited with {self.process.returncode}; log: {self.log_path}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"service on port {self.port} not ready after {timeout_s} s; log: {self.log_path}")

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful drain) and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def restart(self, wait: bool = True) -> ServiceProcess:
        self.kill()
        return self.start(wait=wait)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
