"""Prometheus metrics: named with units, staged like TEI's (queue, tokenize, forward, total).

The names here are a contract: the Kubernetes autoscaler scales on `paretorm_queue_items` and the Grafana
dashboard reads the others (tests in tests/deploy check both against `METRIC_NAMES`).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = tuple(float(2**i) for i in range(0, 11))
TOKEN_BUCKETS = tuple(float(2**i) for i in range(4, 19))

REQUESTS = Counter("paretorm_requests", "HTTP requests by route and status code", ["route", "status"])
INFLIGHT = Gauge("paretorm_inflight_requests", "HTTP requests being handled now")
QUEUE_ITEMS = Gauge("paretorm_queue_items", "Conversations waiting for a forward pass")
QUEUE_TOKENS = Gauge("paretorm_queue_tokens", "Tokens waiting for a forward pass")
BATCH_BUDGET_TOKENS = Gauge("paretorm_batch_budget_tokens", "Tokens per forward as planned (start-up probe)")
REJECTED = Counter("paretorm_rejected", "Requests refused before queueing", ["reason"])
DROPPED = Counter("paretorm_dropped_conversations", "Queued conversations dropped (deadline or client gone)")
BATCH_SIZE = Histogram("paretorm_batch_size", "Conversations per forward pass", buckets=SIZE_BUCKETS)
BATCH_TOKENS = Histogram("paretorm_batch_tokens", "Real tokens per forward pass", buckets=TOKEN_BUCKETS)
PADDING_RATIO = Histogram(
    "paretorm_padding_ratio",
    "Computed tokens / real tokens per forward pass (below 1 when shared prompts are computed once)",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.05, 1.1, 1.15, 1.25, 1.5, 2.0, 3.0, 5.0),
)
STAGE_SECONDS = Histogram(
    "paretorm_stage_duration_seconds", "Latency of each stage", ["stage"], buckets=DURATION_BUCKETS
)
OBJECTIVE_SCORE = Histogram(
    "paretorm_objective_score",
    "Per-objective rewards served",
    ["objective"],
    buckets=(-10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
RESULT_CACHE = Counter("paretorm_result_cache", "Result cache lookups", ["outcome"])

METRIC_NAMES = (
    "paretorm_requests_total",
    "paretorm_inflight_requests",
    "paretorm_queue_items",
    "paretorm_queue_tokens",
    "paretorm_batch_budget_tokens",
    "paretorm_rejected_total",
    "paretorm_dropped_conversations_total",
    "paretorm_batch_size",
    "paretorm_batch_tokens",
    "paretorm_padding_ratio",
    "paretorm_stage_duration_seconds",
    "paretorm_objective_score",
    "paretorm_result_cache_total",
)


def observe_batch(items: int, real_tokens: int, computed_tokens: int, forward_seconds: float) -> None:
    BATCH_SIZE.observe(items)
    BATCH_TOKENS.observe(real_tokens)
    if real_tokens:
        PADDING_RATIO.observe(computed_tokens / real_tokens)
    STAGE_SECONDS.labels(stage="forward").observe(forward_seconds)


def observe_rewards(objectives: Sequence[str], rewards: Sequence[Sequence[float]]) -> None:
    children = [OBJECTIVE_SCORE.labels(objective=name) for name in objectives]
    for row in rewards:
        for child, value in zip(children, row, strict=True):
            child.observe(value)
