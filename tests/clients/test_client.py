"""`RewardClient` and `AsyncRewardClient` against the hand-written fake service (no sockets)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from fake_service import FAST_RETRY, OBJECTIVES, FakeCluster, FakeRewardService, fake_rewards

import clients
from clients import (
    AsyncRewardClient,
    BadRequest,
    Overloaded,
    RetryPolicy,
    RewardClient,
    RewardServiceError,
    Timeout,
    Unauthorized,
    Unavailable,
)


def test_public_surface_is_the_sorted_all() -> None:
    public = sorted(
        name
        for name in dir(clients)
        if not name.startswith("_")
        and name.isidentifier()
        and name not in {"annotations"}
        and not isinstance(getattr(clients, name), type(clients))
    )
    assert clients.__all__ == sorted(clients.__all__)
    assert set(clients.__all__) == set(public)


def test_import_clients_does_not_import_torch() -> None:
    modules = "clients, clients.adapters.trl, clients.adapters.verl, clients.adapters.openrlhf_reward_func"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_score_pairs_names_objectives(client: RewardClient) -> None:
    batch = client.score_pairs(["hi", "hey"], ["hello", "yo"])
    assert batch.objectives == tuple(OBJECTIVES)
    assert batch[0].rewards.tolist() == fake_rewards("hi", "hello")
    assert batch[1].rewards["helpsteer-verbosity"] == fake_rewards("hey", "yo")[1]


def test_large_input_is_split_within_limits_and_kept_in_order() -> None:
    fake = FakeRewardService(max_items=7, max_body_bytes=2000)
    prompts = [f"prompt {i}" for i in range(100)]
    responses = [f"response number {i} " + "w" * (i % 13) for i in range(100)]
    with RewardClient(
        "http://rm", transport=httpx.MockTransport(fake), retry=FAST_RETRY, concurrency=4
    ) as rc:
        batch = rc.score_pairs(prompts, responses)
    assert [item.rewards.tolist() for item in batch] == [
        fake_rewards(p, r) for p, r in zip(prompts, responses, strict=True)
    ]
    sizes = [b.num_conversations() for b in fake.scored]
    assert sum(sizes) == 100 and max(sizes) <= 7 and len(sizes) >= 15


def test_groups_larger_than_the_limit_are_cut_and_reassembled(fake: FakeRewardService) -> None:
    fake.max_items = 4
    with RewardClient("http://rm", transport=httpx.MockTransport(fake), retry=FAST_RETRY) as rc:
        groups = rc.score_groups(
            [
                {"prompt": "p", "responses": [f"r{i}" for i in range(10)], "baseline": "b"},
                {"prompt": "q", "responses": ["only"]},
            ]
        )
    assert [len(g) for g in groups] == [10, 1]
    assert groups[0].objective(OBJECTIVES[0]) == [fake_rewards("p", f"r{i}")[0] for i in range(10)]
    assert groups[0].baseline_score is not None


def test_429_is_retried(fake: FakeRewardService, client: RewardClient) -> None:
    client.model_info()
    fake.script = [429, 429]
    batch = client.score_pairs(["p"], ["r"])
    assert batch[0].rewards.tolist() == fake_rewards("p", "r")
    assert [r.url.path for r in fake.requests].count("/v1/score") == 3


def test_429_honours_retry_after_seconds() -> None:
    fake = FakeRewardService(retry_after="1")
    with RewardClient("http://rm", transport=httpx.MockTransport(fake), retry=FAST_RETRY) as rc:
        rc.model_info()
        fake.script = [429]
        import time

        start = time.monotonic()
        rc.score_pairs(["p"], ["r"])
        assert time.monotonic() - start >= 1.0


def test_persistent_429_raises_overloaded(fake: FakeRewardService, client: RewardClient) -> None:
    client.model_info()
    fake.script = [429] * 10
    with pytest.raises(Overloaded, match="gave up after 6 attempts") as info:
        client.score_pairs(["p"], ["r"])
    assert info.value.status_code == 429


def test_503_and_connection_errors_are_retried(fake: FakeRewardService, client: RewardClient) -> None:
    client.model_info()
    fake.script = [503, "connect", 503]
    assert len(client.score_pairs(["p"], ["r"])) == 1


def test_persistent_connection_errors_raise_unavailable(
    fake: FakeRewardService, client: RewardClient
) -> None:
    client.model_info()
    fake.script = ["connect"] * 10
    with pytest.raises(Unavailable, match="ConnectError"):
        client.score_pairs(["p"], ["r"])


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_other_4xx_are_not_retried(fake: FakeRewardService, client: RewardClient, status: int) -> None:
    client.model_info()
    fake.script = [status]
    before = len(fake.requests)
    with pytest.raises(BadRequest, match=f"scripted {status}") as info:
        client.score_pairs(["p"], ["r"])
    assert len(fake.requests) - before == 1 and info.value.status_code == status


def test_server_error_500_is_the_base_error(fake: FakeRewardService, client: RewardClient) -> None:
    client.model_info()
    fake.script = [500]
    with pytest.raises(RewardServiceError) as info:
        client.score_pairs(["p"], ["r"])
    assert type(info.value) is RewardServiceError and info.value.status_code == 500


def test_504_is_timeout(fake: FakeRewardService, client: RewardClient) -> None:
    client.model_info()
    fake.script = [504]
    with pytest.raises(Timeout):
        client.score_pairs(["p"], ["r"])


def test_deadline_bounds_the_whole_call() -> None:
    fake = FakeRewardService(retry_after="5")
    with RewardClient(
        "http://rm", transport=httpx.MockTransport(fake), retry=FAST_RETRY, deadline_s=0.5
    ) as rc:
        rc.model_info()
        fake.script = [503] * 5
        with pytest.raises(Timeout, match="deadline of 0.5 s"):
            rc.score_pairs(["p"], ["r"])


def test_deadline_header_and_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETORM_API_KEY", "sekret")
    monkeypatch.setenv("PARETORM_URL", "http://rm")
    fake = FakeRewardService(api_key="sekret")
    with RewardClient(transport=httpx.MockTransport(fake), deadline_s=30) as rc:
        rc.score_pairs(["p"], ["r"])
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == "Bearer sekret"
    assert 0 < int(sent.headers["x-request-deadline-ms"]) <= 30_000


def test_wrong_key_is_unauthorized_and_not_retried() -> None:
    fake = FakeRewardService(api_key="right")
    with RewardClient("http://rm", api_key="wrong", transport=httpx.MockTransport(fake)) as rc:
        with pytest.raises(Unauthorized, match="PARETORM_API_KEY"):
            rc.model_info()
    assert len(fake.requests) == 1


def test_invalid_input_is_bad_request_before_sending(client: RewardClient, fake: FakeRewardService) -> None:
    with pytest.raises(BadRequest, match="2 prompts but 1 responses"):
        client.score_pairs(["a", "b"], ["x"])
    with pytest.raises(BadRequest, match="weights.*direction"):
        client.score([("p", "r")], weights=[1, 0, 0], direction=[0, 1, 0])
    assert fake.requests == []


def test_failover_to_the_other_replica(cluster: FakeCluster) -> None:
    with RewardClient(
        ["http://a", "http://b"], transport=httpx.MockTransport(cluster), retry=FAST_RETRY, cooldown_s=60
    ) as rc:
        rc.model_info()
        cluster.down.add("http://a")
        for _ in range(4):
            assert len(rc.score_pairs(["p"], ["r"])) == 1
        a = next(r for r in rc.pool.replicas if r.url == "http://a")
        assert a.out_until > 0 and a.consecutive_failures >= 2
        tried_a = len(cluster.replicas["http://a"].requests)
        rc.score_pairs(["p"], ["r"])
        assert len(cluster.replicas["http://a"].requests) == tried_a  # out: not even tried


def test_load_is_spread_across_replicas(cluster: FakeCluster) -> None:
    with RewardClient(["http://a", "http://b"], transport=httpx.MockTransport(cluster)) as rc:
        for i in range(10):
            rc.score_pairs([f"p{i}"], ["r"])
    counts = [len(f.scored) for f in cluster.replicas.values()]
    assert sum(counts) == 10 and min(counts) >= 4


def test_replicas_serving_different_revisions_are_refused() -> None:
    cluster = FakeCluster(
        {"http://a": FakeRewardService(revision="1"), "http://b": FakeRewardService(revision="2")}
    )
    with RewardClient(["http://a", "http://b"], transport=httpx.MockTransport(cluster)) as rc:
        with pytest.raises(RewardServiceError, match="different models"):
            rc.score_pairs(["p", "q"], ["r", "s"])


def test_get_reward_pama_and_judges(client: RewardClient, fake: FakeRewardService) -> None:
    fake.max_items = 2
    answer = client.get_reward(["a", "b", "c"])
    assert len(answer.rewards) == 3 and set(answer.extra_logs) == set(OBJECTIVES)
    assert len(answer.extra_logs[OBJECTIVES[0]]) == 3
    pama = client.pama_weights([[1.0, -2.0], [0.5, 3.0]])
    assert pama.combined == [-2.0, 0.5]
    assert [j.name for j in client.judges()] == ["max_words"]
    verdicts = client.judge(
        [{"prompt": "p", "response": "one two three", "judges": [{"name": "max_words", "args": {"n": 2}}]}]
    )
    assert verdicts[0].all_passed is False


def test_wait_until_ready_times_out_when_nothing_listens() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with RewardClient("http://rm", transport=httpx.MockTransport(refuse)) as rc:
        with pytest.raises(Timeout, match="became ready"):
            rc.wait_until_ready(0.2, poll_interval_s=0.05)


def test_async_client_splits_retries_and_keeps_order() -> None:
    fake = FakeRewardService(max_items=3)

    async def main() -> list[list[float]]:
        async with AsyncRewardClient(
            "http://rm",
            transport=httpx.MockTransport(fake),
            retry=RetryPolicy(max_attempts=5, initial_backoff_s=0.001),
        ) as rc:
            await rc.wait_until_ready(5)
            fake.script = [429, "connect"]
            batch = await rc.score_pairs([f"p{i}" for i in range(20)], [f"r{i}" for i in range(20)])
            with pytest.raises(BadRequest):
                fake.script = [422]
                await rc.score_pairs(["p"], ["r"])
            return [item.rewards.tolist() for item in batch]

    assert asyncio.run(main()) == [fake_rewards(f"p{i}", f"r{i}") for i in range(20)]
