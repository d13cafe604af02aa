"""Shared helpers for the reliability suites: distinct items, concurrent posts, process figures.

Items are distinct on purpose (their index is in the text): a score then identifies its item, so "every
item answered exactly once, in order" is checkable by comparing each answer with that item's own
reference score, and no result cache can answer for the model.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx

from service.orphan_guard import descendants


def item(i: int, tag: str = "") -> dict[str, str]:
    return {"prompt": f"Question {tag}{i}: what is {i} plus {i}?", "response": f"It is {2 * i}, {tag}{i}."}


def pairs(n: int, tag: str = "") -> tuple[list[str], list[str]]:
    items = [item(i, tag) for i in range(n)]
    return [x["prompt"] for x in items], [x["response"] for x in items]


def close(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    return all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def enveloped(answer: httpx.Response) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"error"} and set(body["error"]) == {"type", "message"}


async def post_many(url: str, bodies: list[dict[str, Any]], headers: dict[str, str] | None = None,
                    timeout_s: float = 120.0) -> list[httpx.Response | Exception]:
    """POST every body to /v1/score at once (one connection each); an exception stands for a lost answer."""
    limits = httpx.Limits(max_connections=len(bodies) + 8, max_keepalive_connections=len(bodies) + 8)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits, headers=headers) as client:
        return await asyncio.gather(*(client.post("/v1/score", json=body) for body in bodies),
                                    return_exceptions=True)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the engine process, the judge worker): the service is all of them."""
    return [pid, *sorted(descendants(pid))]


def status_mb(pid: int, field: str) -> float:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM, ...) in MB, summed over the process tree; 0 where
    /proc is not there."""
    total = 0.0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def rss_mb(pid: int) -> float:
    """Current resident set (VmRSS) of the process tree in MB."""
    return status_mb(pid, "VmRSS")


def open_fds(pid: int) -> int:
    """Open file descriptors of the process tree."""
    total = 0
    for member in process_tree(pid):
        try:
            total += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            pass
    return total


def metric(url: str, name: str) -> float:
    """One unlabelled sample from the service's /metrics (Prometheus text)."""
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
