"""Helpers the adapters share: one client per process and configuration, and text extraction."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clients.client import RewardClient

_clients: dict[tuple[Any, ...], RewardClient] = {}
_lock = threading.Lock()


def shared_client(
    url: str | Sequence[str] | None, api_key: str | None, options: Mapping[str, Any]
) -> RewardClient:
    """One `RewardClient` per (url, key, options) in this process: connections and replica state are reused.

    Adapter functions are called once per batch or per sample, often from worker threads; building a client
    per call would reopen connections and forget which replica is out.
    """
    urls = tuple(url) if isinstance(url, (list, tuple)) else url
    key = (urls, api_key, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = RewardClient(url, api_key=api_key, **dict(options))
        return client


def content_text(content: Any) -> str:
    """Message content as text: a str, or the text parts of a multimodal part list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text"
        )
    return "" if content is None else str(content)


def messages(value: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Chat messages reduced to the wire form (`role`, `content` as text); tool-call metadata is dropped."""
    return [{"role": str(m["role"]), "content": content_text(m.get("content"))} for m in value]
