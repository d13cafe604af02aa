"""Answers name no server software: no `server` header (uvicorn's default), no `x-powered-by`."""

from __future__ import annotations

import httpx

from tests.support.service_process import ServiceProcess


def test_no_server_or_powered_by_header(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for answer in (client.get("/health/live"), client.post("/v1/score", json={}), client.get("/nowhere")):
            assert "server" not in answer.headers, (answer.url, answer.headers)
            assert "x-powered-by" not in answer.headers, (answer.url, answer.headers)
