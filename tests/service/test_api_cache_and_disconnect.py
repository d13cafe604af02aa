"""Result cache (hits/misses, exact repeats only) and requests abandoned by their client, over real HTTP."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.support.service_process import ServiceProcess


def counter(metrics_text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_result_cache_and_dropped_disconnects(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    args = ["--result-cache-items", "8", "--batch-wait-ms", "400"]
    with ServiceProcess(tiny_armorm_dir, args=args, log_path=tmp_path / "serve.log") as service:
        client = httpx.Client(base_url=service.url, timeout=30)
        item = {"prompt": "Cache me", "response": "Cached."}
        first = client.post("/v1/score", json={"items": [item]}).json()["results"][0]
        again = client.post("/v1/score", json={"items": [item, {"prompt": "Cache me", "response": "New."}]}).json()
        assert again["results"][0] == first
        text = client.get("/metrics").text
        assert counter(text, "paretorm_result_cache_total", '{outcome="hit"}') == 1
        assert counter(text, "paretorm_result_cache_total", '{outcome="miss"}') == 2

        dropped_before = counter(text, "paretorm_dropped_conversations_total")
        try:
            httpx.post(service.url + "/v1/score", json={"items": [{"prompt": "gone", "response": "soon"}] * 3},
                       timeout=0.1)
        except httpx.TimeoutException:
            pass
        time.sleep(1.0)
        text = client.get("/metrics").text
        assert counter(text, "paretorm_dropped_conversations_total") == dropped_before + 3
        assert client.post("/v1/score", json={"items": [item]}).status_code == 200
