"""The Prometheus metrics paretorm exports, as the deploy tests see them.

The HPA, the prometheus-adapter rules and the Grafana dashboard all name metrics by string; a renamed metric
would silently break autoscaling and leave panels empty. The deploy tests check every name against this
table. It is written down from the service's metric contract (names and labels are fixed); the plan is to
build it from the service's own metric registry once that lands, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric family: its Prometheus type and label names (without `le`)."""

    type: MetricType
    labels: tuple[str, ...] = ()


EXPORTED_METRICS: dict[str, MetricSpec] = {
    "paretorm_requests_total": MetricSpec("counter", ("route", "status")),
    "paretorm_queue_items": MetricSpec("gauge"),
    "paretorm_queue_tokens": MetricSpec("gauge"),
    "paretorm_inflight_requests": MetricSpec("gauge"),
    "paretorm_batch_size": MetricSpec("histogram"),
    "paretorm_batch_tokens": MetricSpec("histogram"),
    "paretorm_padding_ratio": MetricSpec("histogram"),
    "paretorm_stage_duration_seconds": MetricSpec("histogram", ("stage",)),
    "paretorm_objective_score": MetricSpec("histogram", ("objective",)),
}

# Labels Prometheus itself attaches to every scraped series (compose static config and Kubernetes SD).
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "device"}
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape returns, mapped to the labels it may carry (`le` on histogram buckets)."""
    series: dict[str, frozenset[str]] = {}
    for name, spec in EXPORTED_METRICS.items():
        labels = frozenset(spec.labels) | TARGET_LABELS
        if spec.type == "histogram":
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_sum"] = labels
            series[name + "_count"] = labels
        else:
            series[name] = labels
    return series


def gauges() -> set[str]:
    """Names usable as an HPA pods metric: a per-pod gauge averages meaningfully over replicas."""
    return {name for name, spec in EXPORTED_METRICS.items() if spec.type == "gauge"}
