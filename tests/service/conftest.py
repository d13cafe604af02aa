"""Fixtures for service tests: a real `paretorm serve` on a loopback port, and the model it serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import ServiceProcess

API_KEY = "test-key-1"


@pytest.fixture(scope="session")
def service(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The tiny ArmoRM behind real HTTP, with auth on and small limits so every limit is reachable."""
    log = tmp_path_factory.mktemp("service-log") / "serve.log"
    process = ServiceProcess(
        tiny_armorm_dir,
        args=["--max-input-tokens", "256", "--max-items-per-request", "64", "--max-body-bytes", "65536",
              "--max-batch-tokens", "4096", "--judge-timeout-s", "2"],
        env={"PARETORM_API_KEYS": f"{API_KEY},second-key"},
        log_path=log,
    )
    with process:
        yield process


@pytest.fixture()
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def loaded_model(tiny_armorm_dir: Path):  # type: ignore[no-untyped-def]
    from service.model import load_reward_model

    return load_reward_model(tiny_armorm_dir)
