"""Fixtures for client tests: fake services behind `httpx.MockTransport`, clients wired to them."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_service import FAST_RETRY, FakeCluster, FakeRewardService  # noqa: E402

from clients import RewardClient  # noqa: E402


@pytest.fixture
def fake() -> FakeRewardService:
    return FakeRewardService()


@pytest.fixture
def client(fake: FakeRewardService) -> RewardClient:
    with RewardClient("http://rm", transport=httpx.MockTransport(fake), retry=FAST_RETRY, seed=0) as rc:
        yield rc


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster({"http://a": FakeRewardService(), "http://b": FakeRewardService()})
