"""The clients against real `paretorm serve` processes on loopback, with a tiny checkpoint.

Three services start once for the module (in parallel, a few seconds each): replicas A and B (small
`--max-items-per-request`, so every call is split) and C (API key, tiny queue, so floods meet 429).
The tests then kill and restart them: a service killed mid-call and started again on the same port,
a replica stopped while a client spreads load over two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import (
    BadRequest,
    Overloaded,
    RetryPolicy,
    RewardClient,
    Timeout,
    Unauthorized,
    Unavailable,
)
from clients.adapters.trl import paretorm_reward_funcs
from tests.support.service_process import ServiceProcess, free_port

PATIENT = RetryPolicy(max_attempts=200, initial_backoff_s=0.05, max_backoff_s=0.5)


Service = ServiceProcess


def _service(model: Path, log_dir: Path, name: str, *flags: str) -> ServiceProcess:
    return ServiceProcess(model, args=["--log-level", "warning", *flags], log_path=log_dir / f"{name}.log")


@pytest.fixture(scope="module")
def services(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    logs = tmp_path_factory.mktemp("service-logs")
    split = ("--max-items-per-request", "4")
    group = {
        "a": _service(tiny_armorm_dir, logs, "a", *split),
        "b": _service(tiny_armorm_dir, logs, "b", *split),
        "c": _service(
            tiny_armorm_dir,
            logs,
            "c",
            "--api-keys",
            "k1",
            "--max-items-per-request",
            "2",
            "--max-input-tokens",
            "64",
            "--max-queue-tokens",
            "100",
            "--batch-wait-ms",
            "20",
        ),
    }
    for service in group.values():
        service.start(wait=False)
    try:
        for service in group.values():
            service.wait_ready()
        yield group
    finally:
        for service in group.values():
            service.kill()


def _pairs(n: int, tag: str = "") -> tuple[list[str], list[str]]:
    return [f"question {tag}{i}: what is {i} plus {i}?" for i in range(n)], [
        f"it is {2 * i}{tag}" for i in range(n)
    ]


def _close(a: list[float], b: list[float]) -> bool:
    return all(abs(x - y) <= 1e-4 * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def test_split_calls_keep_input_order_across_replicas(services: dict[str, Service]) -> None:
    prompts, responses = _pairs(22)
    with RewardClient(services["b"].url) as one_by_one:
        reference = [
            one_by_one.score_pairs([p], [r])[0].rewards.tolist()
            for p, r in zip(prompts, responses, strict=True)
        ]
    with RewardClient([services["a"].url, services["b"].url], concurrency=4) as rc:
        batch = rc.score_pairs(prompts, responses)
        groups = rc.score_groups([{"prompt": prompts[0], "responses": responses[:9]}])
        served = [r.successes for r in rc.pool.replicas]
    assert len(batch) == 22 and all(
        _close(got.rewards.tolist(), want) for got, want in zip(batch, reference, strict=True)
    )
    assert len(groups[0]) == 9 and _close(groups[0][0].rewards.tolist(), reference[0])
    assert min(served) >= 2  # both replicas shared the split call (22 items / 4 per request)


def test_each_exception_type(services: dict[str, Service]) -> None:
    with RewardClient(services["a"].url) as rc:
        with pytest.raises(BadRequest) as bad:
            rc.score_pairs(["p"], ["r"], weights=[1.0, 2.0])  # the model has 6 objectives
        assert bad.value.status_code in (400, 422) and "weights" in bad.value.message
    with RewardClient(services["c"].url, api_key="wrong") as rc, pytest.raises(Unauthorized):
        rc.score_pairs(["p"], ["r"])
    with RewardClient(services["c"].url, api_key="k1") as rc, pytest.raises(BadRequest) as too_long:
        rc.score_pairs(["word " * 200], ["r"], truncation="error")
    assert too_long.value.status_code == 413
    nobody = f"http://127.0.0.1:{free_port()}"
    with RewardClient(nobody, retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01)) as rc:
        with pytest.raises(Unavailable):
            rc.score_pairs(["p"], ["r"])
    with RewardClient(nobody, retry=PATIENT, deadline_s=0.5) as rc, pytest.raises(Timeout):
        rc.score_pairs(["p"], ["r"])


def test_429_floods_are_absorbed_by_backoff(services: dict[str, Service]) -> None:
    prompts, responses = _pairs(48, "flood")
    with RewardClient(services["c"].url, api_key="k1", concurrency=16, retry=PATIENT, deadline_s=120) as rc:
        batch = rc.score_pairs(prompts, responses)
        (replica,) = rc.pool.replicas
    assert len(batch) == 48 and replica.overloaded > 0
    with RewardClient(
        services["c"].url, api_key="k1", concurrency=16, retry=RetryPolicy(max_attempts=1)
    ) as rc:
        with pytest.raises(Overloaded) as info:
            rc.score_pairs(prompts, responses)
    assert info.value.status_code == 429


def test_service_killed_and_restarted_mid_call_answers_every_item_once(services: dict[str, Service]) -> None:
    a, b = services["a"], services["b"]
    prompts, responses = _pairs(120, "restart")
    with RewardClient(b.url, concurrency=4) as reference_client:
        reference = reference_client.score_pairs(prompts, responses).rewards_matrix
    result: dict[str, object] = {}
    with RewardClient(a.url, concurrency=2, retry=PATIENT, deadline_s=150) as rc:
        rc.model_info()
        worker = threading.Thread(target=lambda: result.update(batch=rc.score_pairs(prompts, responses)))
        worker.start()
        (replica,) = rc.pool.replicas
        while replica.successes < 4 and worker.is_alive():
            time.sleep(0.005)
        a.kill()
        killed_after = replica.successes
        a.start(wait=False)
        worker.join(150)
        assert not worker.is_alive()
    batch = result["batch"]
    assert killed_after < 31, "the call finished before the kill; the test proves nothing"
    assert replica.failures > 0  # the kill was seen, and retried
    assert len(batch) == 120  # type: ignore[arg-type]
    assert all(_close(got, want) for got, want in zip(batch.rewards_matrix, reference, strict=True))  # type: ignore[attr-defined]
    a.wait_ready()


def test_failover_when_a_replica_is_stopped(services: dict[str, Service]) -> None:
    a, b = services["a"], services["b"]
    b.kill()
    prompts, responses = _pairs(16, "failover")
    with RewardClient([a.url, b.url], retry=PATIENT, cooldown_s=60) as rc:
        first = rc.score_pairs(prompts, responses)
        second = rc.score_pairs(prompts, responses)
        down = next(r for r in rc.pool.replicas if r.url == b.url)
        tries_on_b = down.failures
        rc.score_pairs(prompts, responses)
        assert down.failures == tries_on_b  # out for the cool-down: not tried again
    assert len(first) == len(second) == 16
    assert all(_close(x, y) for x, y in zip(first.rewards_matrix, second.rewards_matrix, strict=True))  # type: ignore[attr-defined]
    assert tries_on_b >= 2


def test_trl_adapter_and_get_reward_against_the_service(services: dict[str, Service], tiny_tokenizer) -> None:
    funcs = paretorm_reward_funcs(services["a"].url)
    prompt = [{"role": "user", "content": "Say hi."}]
    prompts = [prompt] * 4
    completions = [[{"role": "assistant", "content": c}] for c in ("hi", "hello", "hey there", "no")]
    outputs = {
        f.__name__: f(prompts=prompts, completions=completions, completion_ids=[[0]] * 4) for f in funcs
    }
    assert "paretorm_helpsteer-helpfulness" in outputs and "paretorm_score" in outputs
    with RewardClient(services["a"].url) as rc:
        direct = rc.score_pairs(prompts, [c[0]["content"] for c in completions])
        texts = [tiny_tokenizer.apply_chat_template(prompt + c, tokenize=False) for c in completions]
        reward = rc.get_reward(texts)
    assert _close(outputs["paretorm_score"], direct.scores)
    assert _close(reward.rewards, direct.scores)  # OpenRLHF's route: the same numbers from templated text
    assert _close(reward.extra_logs["helpsteer-helpfulness"], direct.objective("helpsteer-helpfulness"))
