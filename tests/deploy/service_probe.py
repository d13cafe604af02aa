"""HTTP checks against a running paretorm container: wait for readiness, score, read metrics.

Kept apart from the test module so the container test and the compose test send the same requests and read
the answers the same way.
"""

from __future__ import annotations

import re
import time

import httpx

DEFAULT_OBJECTIVES = ["verbosity", "instruction-following", "format", "refusal"]
SCORE_BODY = {
    "items": [
        {"prompt": "What is 2 + 2?", "response": "2 + 2 = 4."},
        {"prompt": "Write one word in lowercase.", "response": "I'm sorry, I can't help with that."},
    ],
    "groups": [{"prompt": "Name a colour.", "responses": ["Red.", "Blue is a colour of the sky."]}],
}


def wait_ready(base_url: str, timeout_s: float, container_alive: callable) -> float:
    """Seconds until /health/ready answers 200; fails early if the container died."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not container_alive():
            raise AssertionError("the container exited before it was ready")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=5).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"{base_url}/health/ready not 200 after {timeout_s:.0f} s")


def score(base_url: str, body: dict | None = None, timeout_s: float = 120) -> dict:
    """POST /v1/score and check the shape: per-objective rewards and gating on every item."""
    response = httpx.post(f"{base_url}/v1/score", json=body or SCORE_BODY, timeout=timeout_s)
    assert response.status_code == 200, response.text
    data = response.json()
    n = len(data["objectives"])
    results = data["results"] + [r for g in data.get("groups", []) for r in g["results"]]
    for result in results:
        assert len(result["rewards"]) == n and len(result["gating"]) == n, result
        assert isinstance(result["score"], float)
    return data


def metric_series(base_url: str) -> set[str]:
    """The series names in /metrics (`paretorm_batch_size_bucket`, `paretorm_requests_total`, ...)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}
