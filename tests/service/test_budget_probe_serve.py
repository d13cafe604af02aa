"""`paretorm serve` measures its forward budget before readiness, plans at it, logs it and exports it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from service.engine.budget_probe import ladder
from tests.support.service_process import ServiceProcess


def gauge(url: str) -> int:
    found = re.search(r"^paretorm_batch_budget_tokens (\S+)$", httpx.get(url + "/metrics").text, re.MULTILINE)
    assert found is not None
    return int(float(found.group(1)))


def test_the_service_plans_at_the_budget_it_measured(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    args = ["--tune-batch-tokens", "--max-batch-tokens", "8192"]
    with ServiceProcess(tiny_armorm_dir, args=args, log_path=log) as service:
        chosen = gauge(service.url)
        assert httpx.get(service.url + "/v1/model").json()["batch_tokens"] == chosen
        answer = httpx.post(
            service.url + "/v1/score", json={"items": [{"prompt": "Hi?", "response": "Hello."}]}
        )
        assert answer.status_code == 200, answer.text
    found = re.search(
        r"forwards are planned at (\d+) tokens \(us per token by budget: ([^)]*)\)", log.read_text()
    )
    assert found is not None, log.read_text()[-2000:]
    measured = {int(budget): float(cost) for budget, cost in re.findall(r"(\d+): ([\d.]+)", found.group(2))}
    assert list(measured) == ladder(8192)[: len(measured)]
    assert int(found.group(1)) == chosen
    # The log rounds to 0.1 us, so the choice is checked within that rounding.
    bound = 1.1 * min(measured.values())
    planned = min(chosen, max(measured))  # the ladder's top chosen keeps the ceiling
    assert measured[planned] <= bound + 0.1
    assert all(cost > bound - 0.1 for budget, cost in measured.items() if budget < planned)


def test_without_the_probe_forwards_are_planned_at_max_batch_tokens(
    tiny_armorm_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with ServiceProcess(
        tiny_armorm_dir, args=["--no-tune-batch-tokens", "--max-batch-tokens", "8192"], log_path=log
    ) as service:
        assert gauge(service.url) == 8192
        assert httpx.get(service.url + "/v1/model").json()["batch_tokens"] == 8192
    assert "forwards are planned at" not in log.read_text()
