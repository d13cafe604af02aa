"""The images for real: build them on a local Docker daemon, run the server, then the compose stack.

`make test-deploy` runs these (marker `deploy_docker`, deselected by the default `pytest`/`make test`). On a
machine where Docker cannot be installed or started they FAIL with the reason: never a silent skip.

Steps (each timed; the summary prints at the end of the run, see step_timer.py):
1. apt-get the missing packages, start dockerd (stopped again at the end, by PID);
2. build the local base (debootstrap bookworm + python3, `docker import`) and a local Prometheus image;
3. build the CPU server image from the repo's Dockerfile against that base with the host's pip settings,
   tagged `paretorm:<version>-cpu` and left in the daemon;
4. run it with a read-only root filesystem and no mount: ready, /v1/score per objective, /metrics, the
   image's HEALTHCHECK turns healthy, UID 10001, `docker stop` drains in-flight requests and exits 0;
5. `docker compose` brings up the server and Prometheus; Prometheus scrapes it, and every query of the
   Grafana dashboard returns series from Prometheus' HTTP API.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deploy_metrics import CONTRACT_METRICS
from deploy_paths import REPO
from docker_base import BASE_TAG, build_base_image
from docker_host import DockerDaemon, DockerUnavailable, compose_command, ensure_packages, run
from docker_images import (
    PROMETHEUS_TAG,
    build_prometheus_image,
    build_service_image,
    image_summary,
    image_user_and_healthcheck,
)
from pip_settings import LocalPackageServer, build_pip_settings
from service_probe import DEFAULT_OBJECTIVES, metric_series, score, wait_ready
from step_timer import TIMER

pytestmark = [pytest.mark.deploy_docker, pytest.mark.timeout(3600)]

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"paretorm:{VERSION}-cpu"
COMPOSE_PROJECT = "paretorm-deploy-test"
COMPOSE_OVERRIDE = Path(__file__).parent / "compose.test.yml"
READY_TIMEOUT_S = 300.0
HEALTHY_TIMEOUT_S = 120.0
# Dashboard panels use Grafana's $__rate_interval; 1m covers 4 scrapes at the compose config's 15 s.
RATE_INTERVAL = "1m"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    """A running daemon: packages installed if missing, dockerd started here if none answers."""
    daemon = DockerDaemon(tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    try:
        with TIMER.step("install missing packages (apt)"):
            installed = ensure_packages()
        TIMER.notes.append(f"apt installed: {', '.join(installed) or 'nothing (all present)'}")
        with TIMER.step("start dockerd"):
            daemon.start()
    except DockerUnavailable as error:
        pytest.fail(f"no Docker daemon on this machine, so the image tests cannot run: {error}")
    origin = "started here" if daemon.started_here else "already running"
    TIMER.notes.append(f"docker daemon {daemon.server_version} ({origin})")
    yield daemon
    with TIMER.step("stop dockerd"):
        daemon.stop()


@pytest.fixture(scope="module")
def images(docker_daemon: DockerDaemon, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Base, Prometheus and server images built; returns their tags."""
    logs = tmp_path_factory.mktemp("build-logs")
    with TIMER.step("base image (debootstrap + docker import)"):
        built = build_base_image(BASE_TAG)
    TIMER.notes.append(f"base image {BASE_TAG}: {'built now' if built else 'reused (already in the daemon)'}")
    with TIMER.step("prometheus image (Debian binary)"):
        build_prometheus_image(BASE_TAG, logs / "prometheus.log")
    server = LocalPackageServer()
    server.start()
    try:
        pip = build_pip_settings(server)
        with TIMER.step(f"server image {IMAGE}"):
            build_service_image(REPO, IMAGE, BASE_TAG, pip, logs / "server.log")
    finally:
        server.stop()
    for tag in (BASE_TAG, PROMETHEUS_TAG, IMAGE):
        TIMER.notes.append(f"built: {image_summary(tag)}")
    return {"server": IMAGE, "prometheus": PROMETHEUS_TAG}


def _inspect(container: str, template: str) -> str:
    return run("docker", "inspect", "-f", template, container).stdout.strip()


@pytest.fixture(scope="module")
def container(images: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The server image run as compose and Kubernetes run it: read-only root, tmpfs /tmp, no volume."""
    name, port = f"paretorm-deploy-test-{_free_port()}", _free_port()
    run("docker", "rm", "-f", name, check=False)
    with TIMER.step("container start to /health/ready"):
        run(
            "docker", "run", "-d", "--init", "--name", name, "--read-only", "--tmpfs", "/tmp",
            "-p", f"127.0.0.1:{port}:8000", images["server"],
        )  # fmt: skip
        alive = lambda: _inspect(name, "{{.State.Running}}") == "true"  # noqa: E731
        try:
            wait_ready(f"http://127.0.0.1:{port}", READY_TIMEOUT_S, alive)
        except AssertionError:
            logs = run("docker", "logs", "--tail", "40", name, check=False)
            raise AssertionError(f"container not ready; its log:\n{logs.stdout}{logs.stderr}") from None
    yield name, f"http://127.0.0.1:{port}"
    run("docker", "rm", "-f", name, check=False)


def test_image_runs_as_uid_10001_with_a_healthcheck(images: dict[str, str]) -> None:
    user, has_healthcheck = image_user_and_healthcheck(images["server"])
    assert user.split(":")[0] == "10001"
    assert has_healthcheck


def test_container_scores_per_objective_and_exports_metrics(container: tuple[str, str]) -> None:
    name, url = container
    with TIMER.step("container /v1/score + /metrics"):
        data = score(url)
        series = metric_series(url)
    assert data["objectives"] == DEFAULT_OBJECTIVES, "the embedded default model, with no mount"
    assert len(data["results"]) == 2 and len(data["groups"][0]["results"]) == 2
    missing = [m for m in CONTRACT_METRICS if not any(s.startswith(m) for s in series)]
    assert not missing, f"/metrics lacks {missing}"
    model = httpx.get(f"{url}/v1/model", timeout=10).json()
    assert model["is_demo"] is False
    TIMER.notes.append(f"container forward: {model['forward']}, attention kernel {model['attention']}")
    assert model["attention"] in ("matmul", "sdpa", "paged"), "the probe's choice on this CPU"
    kernel = run("docker", "exec", name, "python", "-c",
                 "from service.model.paged_attention import available; print(available())")  # fmt: skip
    assert kernel.stdout.strip() == "True", f"vLLM's CPU attention kernel does not load: {kernel.stderr}"


def test_container_is_healthy_non_root_and_read_only(container: tuple[str, str]) -> None:
    name, _ = container
    with TIMER.step("container HEALTHCHECK healthy"):
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while (status := _inspect(name, "{{.State.Health.Status}}")) != "healthy":
            assert status in ("starting", "healthy"), f"HEALTHCHECK says {status}"
            assert time.monotonic() < deadline, f"not healthy after {HEALTHY_TIMEOUT_S:.0f} s"
            time.sleep(2)
    assert run("docker", "exec", name, "id", "-u").stdout.strip() == "10001"
    assert _inspect(name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    write = run("docker", "exec", name, "sh", "-c", "echo x > /opt/x", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_a_cpu_limit_caps_the_torch_threads_inside_the_image(images: dict[str, str]) -> None:
    """`docker run --cpus 1` is a cgroup CFS quota, not fewer cores: read from inside the container (through
    Docker's own cgroup layout), it caps the torch threads at 1; without it torch keeps one per core
    (service/cpu_budget.py)."""
    probe = "\n".join([
        "from service.cpu_budget import apply_torch_threads, cgroup_cpu_limit",
        "print(cgroup_cpu_limit())",
        "print(apply_torch_threads(None))",
    ])  # fmt: skip
    command = ["docker", "run", "--rm", "--read-only", "--entrypoint", "python"]
    limited = run(*command, "--cpus", "1", images["server"], "-c", probe).stdout.splitlines()
    free = run(*command, images["server"], "-c", probe).stdout.splitlines()
    assert limited[0] == "1.0", limited
    if len(os.sched_getaffinity(0)) > 1:
        assert limited[1].startswith("1 (capped by the cgroup CPU quota, 1 of the"), limited
    assert free[0] == "None" and "no cgroup CPU quota" in free[1], free
    TIMER.notes.append(f"--cpus 1: torch threads {limited[1]}; no limit: {free[1]}")


def test_docker_stop_drains_in_flight_requests(container: tuple[str, str]) -> None:
    """SIGTERM while requests are being scored: every request gets an answer, the exit code is 0.

    The server's contract (service/server.py): what the batcher had accepted finishes with 200; a request
    still being parsed or tokenised when the signal came is refused with a retryable 503 (Retry-After), so a
    client moves to another replica. No request may be cut off without a response."""
    name, url = container
    answer = "Because of Rayleigh scattering. " * 4
    body = {
        "items": [{"prompt": f"Question {n}: why is the sky blue?", "response": answer} for n in range(16)]
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(httpx.post, f"{url}/v1/score", json=body, timeout=120) for _ in range(4)]
        deadline = time.monotonic() + 30
        while not re.search(r"^paretorm_inflight_requests [1-9]", httpx.get(f"{url}/metrics").text, re.M):
            assert time.monotonic() < deadline, "the requests never became in-flight"
            time.sleep(0.05)
        with TIMER.step("docker stop (drain)"):
            stopped = run("docker", "stop", "-t", "75", name, timeout=120)
        responses = [f.result() for f in futures]  # a connection cut off without an answer raises here
    assert stopped.returncode == 0
    assert _inspect(name, "{{.State.ExitCode}}") == "0", "the drain ended in a clean exit, not SIGKILL"
    answered = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert answered, "at least the request in flight at SIGTERM was answered"
    assert all(len(r.json()["results"]) == 16 for r in answered)
    for response in refused:
        assert response.status_code == 503 and response.headers["Retry-After"], response.text
        assert response.json()["error"]["type"] == "unavailable"
    TIMER.notes.append(f"drain: {len(answered)} in-flight requests answered 200, {len(refused)} refused 503")


@pytest.fixture(scope="module")
def compose_stack(images: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The compose file's server + Prometheus (project paretorm-deploy-test), with the test override."""
    command = compose_command()
    assert command is not None, "neither `docker compose` nor docker-compose is installed"
    http_port, prometheus_port = _free_port(), _free_port()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "PROMETHEUS_IMAGE": images["prometheus"],
        "PARETORM_HTTP_PORT": str(http_port),
        "PROMETHEUS_PORT": str(prometheus_port),
    }
    base = [
        *command,
        "-p",
        COMPOSE_PROJECT,
        "-f",
        str(REPO / "docker-compose.yml"),
        "-f",
        str(COMPOSE_OVERRIDE),
    ]
    compose = lambda *args, **kw: run(*base, *args, env=env, cwd=REPO, timeout=600, **kw)  # noqa: E731
    compose("down", "-v", check=False)
    url = f"http://127.0.0.1:{http_port}"
    with TIMER.step("compose up to /health/ready"):
        compose("up", "-d", "--no-build", "paretorm", "prometheus")
        server = compose("ps", "-q", "paretorm").stdout.strip()
        alive = lambda: _inspect(server, "{{.State.Running}}") == "true"  # noqa: E731
        wait_ready(url, READY_TIMEOUT_S, alive)
    yield url, f"http://127.0.0.1:{prometheus_port}"
    with TIMER.step("compose down"):
        compose("down", "-v", check=False)


def _traffic_for_every_panel(url: str) -> None:
    """Requests that make every dashboard series exist: scores and groups (batches, stages, objectives),
    a repeat (result cache hit), and a burst past the override's small queue budget (429: rejections)."""
    score(url)
    score(url)
    burst = {"items": [{"prompt": "Say hello. " * 20, "response": f"Hello {i}. " * 10} for i in range(4)]}
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(
            pool.map(lambda _: httpx.post(f"{url}/v1/score", json=burst, timeout=120).status_code, range(16))
        )
    assert 429 in codes, f"the burst was meant to overflow the queue; got {codes}"


def _query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def test_prometheus_scrapes_compose_server_and_every_dashboard_query_has_series(
    compose_stack: tuple[str, str],
) -> None:
    url, prometheus = compose_stack
    dashboard = json.loads((REPO / "deploy" / "grafana" / "paretorm-dashboard.json").read_text())
    exprs = [
        t["expr"].replace("$__rate_interval", RATE_INTERVAL)
        for p in dashboard["panels"]
        for t in p["targets"]
    ]
    with TIMER.step("traffic + Prometheus answers every dashboard query"):
        _traffic_for_every_panel(url)
        deadline = time.monotonic() + 180
        while True:
            score(url)  # keeps rates non-zero while Prometheus collects the samples rate() needs
            empty = [e for e in exprs if not _query(prometheus, e)]
            if not empty:
                break
            assert time.monotonic() < deadline, f"queries still without series after 180 s: {empty}"
            time.sleep(5)
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    health = {t["labels"]["instance"]: t["health"] for t in targets}
    assert health["paretorm:8000"] == "up", health
    up = _query(prometheus, 'up{job="paretorm", instance="paretorm:8000"}')
    assert [s["value"][1] for s in up] == ["1"]


def test_compose_healthcheck_turns_healthy(compose_stack: tuple[str, str]) -> None:
    ps = subprocess.run(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={COMPOSE_PROJECT}",
         "--filter", "label=com.docker.compose.service=paretorm", "--format", "{{.ID}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (server,) = ps.stdout.split()
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while (status := _inspect(server, "{{.State.Health.Status}}")) != "healthy":
        assert status == "starting" and time.monotonic() < deadline, status
        time.sleep(2)
    assert _inspect(server, "{{.HostConfig.ReadonlyRootfs}}") == "true"
