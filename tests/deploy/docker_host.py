"""The Docker host for the `deploy_docker` tests: the Debian packages they need, and a daemon they own.

Nothing here skips. A machine where the packages cannot be installed or `dockerd` cannot start raises
`DockerUnavailable` with the reason, and the tests fail with it: a deployment check that silently does not
run proves nothing.

- Packages come from Debian with apt (`apt-get update` first), only when a binary is missing: `docker.io`
  (dockerd, containerd, runc), `docker-compose` (compose v1; the tests also accept the v2 plugin),
  `debootstrap` (the local base image, see docker_base.py) and `prometheus` (its binary goes into the local
  Prometheus image). Installing needs root, as it does on these machines.
- A daemon that already answers is used as it is and left running. Otherwise `dockerd` is started here, as
  root, logging to a file, and stopped at the end by its PID (SIGTERM, then SIGKILL after 30 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# binary -> Debian package that provides it
REQUIRED_BINARIES = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "debootstrap": "debootstrap",
    "prometheus": "prometheus",
}
COMPOSE_PACKAGE = "docker-compose"
DAEMON_START_TIMEOUT_S = 60.0
DAEMON_STOP_TIMEOUT_S = 30.0


class DockerUnavailable(RuntimeError):
    """No Docker daemon can be had on this machine; the message says what failed."""


def run(*args: str, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on failure the error carries stdout and stderr."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return done


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) when present, else Debian's `docker-compose` (v1), else None."""
    if run("docker", "compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def ensure_packages() -> list[str]:
    """Install the Debian packages whose binaries are missing; returns the packages installed."""
    missing = sorted({pkg for binary, pkg in REQUIRED_BINARIES.items() if shutil.which(binary) is None})
    if shutil.which("docker") is None or compose_command() is None:
        missing.append(COMPOSE_PACKAGE)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise DockerUnavailable(f"need root to `apt-get install {' '.join(missing)}` (missing binaries)")
    if shutil.which("apt-get") is None:
        raise DockerUnavailable(f"no apt-get to install {missing}; install Docker and {missing} by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *sorted(set(missing))],
    ):
        done = run(*command, env=env, check=False, timeout=1200)
        if done.returncode != 0:
            raise DockerUnavailable(f"`{' '.join(command)}` failed:\n{done.stderr[-3000:]}")
    return sorted(set(missing))


def daemon_answers() -> bool:
    return run("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=30).returncode == 0


@dataclass
class DockerDaemon:
    """A `dockerd` this process started (or None when one was already running); `stop` ends only ours."""

    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    server_version: str = field(default="")

    def start(self) -> None:
        if not daemon_answers():
            if os.geteuid() != 0:
                raise DockerUnavailable("no Docker daemon answers and starting dockerd needs root")
            log = self.log_path.open("wb")
            self.process = subprocess.Popen(
                ["dockerd", "--pidfile", str(self.log_path.with_suffix(".pid"))],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
            while not daemon_answers():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise DockerUnavailable(f"dockerd did not come up (log {self.log_path}):\n{tail}")
                time.sleep(0.5)
        self.server_version = run("docker", "info", "--format", "{{.ServerVersion}}").stdout.strip()

    def stop(self) -> None:
        """SIGTERM our dockerd by its PID and wait; SIGKILL it if it has not exited in 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=DAEMON_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def started_here(self) -> bool:
        return self.process is not None
