"""The Prometheus metrics paretorm exports, read from the service's own metric objects.

The HPA, the prometheus-adapter rules and the Grafana dashboard name metrics by string; a renamed metric
would silently break autoscaling and leave panels empty. The deploy tests check every name and label against
this table, which is built from `service.metrics` (prometheus_client objects; importing it loads no torch),
so the manifests cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from service import metrics as service_metrics

# The names the deployment contract fixes (HPA, adapter, dashboard); the service may export more.
CONTRACT_METRICS = frozenset(
    {
        "paretorm_requests_total",
        "paretorm_queue_items",
        "paretorm_queue_tokens",
        "paretorm_inflight_requests",
        "paretorm_batch_size",
        "paretorm_batch_tokens",
        "paretorm_padding_ratio",
        "paretorm_stage_duration_seconds",
        "paretorm_objective_score",
    }
)
# Labels Prometheus itself attaches to every scraped series (compose static config and Kubernetes SD).
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "device"}
)


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric family: its Prometheus type and label names (without `le`)."""

    type: str
    labels: tuple[str, ...] = ()
    # prometheus_client exports no `_sum` for a histogram with a negative bucket bound (its sum would not be
    # monotonic, so rate() over it is meaningless): a dashboard mean over such a histogram is always empty.
    has_sum: bool = True


def _exported_metrics() -> dict[str, MetricSpec]:
    specs: dict[str, MetricSpec] = {}
    for value in vars(service_metrics).values():
        if isinstance(value, MetricWrapperBase):
            # prometheus_client keeps the family name and labels on these attributes; counters gain `_total`.
            name = value._name + ("_total" if value._type == "counter" else "")
            bounds = getattr(value, "_upper_bounds", ())
            has_sum = not any(bound < 0 for bound in bounds)
            specs[name] = MetricSpec(value._type, tuple(value._labelnames), has_sum)
    return specs


EXPORTED_METRICS: dict[str, MetricSpec] = _exported_metrics()


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape returns, mapped to the labels it may carry (`le` on histogram buckets)."""
    series: dict[str, frozenset[str]] = {}
    for name, spec in EXPORTED_METRICS.items():
        labels = frozenset(spec.labels) | TARGET_LABELS
        if spec.type == "histogram":
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_count"] = labels
            if spec.has_sum:
                series[name + "_sum"] = labels
        else:
            series[name] = labels
    return series


def gauges() -> set[str]:
    """Names usable as an HPA pods metric: a per-pod gauge averages meaningfully over replicas."""
    return {name for name, spec in EXPORTED_METRICS.items() if spec.type == "gauge"}
