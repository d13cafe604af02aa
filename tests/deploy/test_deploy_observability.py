"""Grafana dashboard, Prometheus scrape config and prometheus-adapter rules only name metrics and labels the
service exports, so a rename cannot silently empty a panel or stall the autoscaler."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from deploy_metrics import CONTRACT_METRICS, EXPORTED_METRICS, exported_series, gauges
from deploy_paths import K8S, REPO
from deploy_render import render

from service import metrics as service_metrics

METRIC_NAME = re.compile(r"\bparetorm_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def _dashboard() -> dict:
    return json.loads((REPO / "deploy" / "grafana" / "paretorm-dashboard.json").read_text())


def _exprs(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _check_expr(expr: str) -> None:
    series = exported_series()
    names = METRIC_NAME.findall(expr)
    assert names, f"query names no paretorm metric: {expr}"
    unknown = [n for n in names if n not in series]
    assert not unknown, f"{expr}: {unknown} are not exported (known: {sorted(series)})"
    allowed = frozenset().union(*(series[n] for n in names))
    used = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    used |= set(MATCHER.findall(expr))
    assert used <= allowed, f"{expr}: labels {sorted(used - allowed)} are not on these series"


def test_metric_table_matches_the_service_and_the_contract() -> None:
    assert set(EXPORTED_METRICS) == set(service_metrics.METRIC_NAMES)
    assert CONTRACT_METRICS <= set(EXPORTED_METRICS), "a metric the deployment relies on is gone"
    assert EXPORTED_METRICS["paretorm_queue_items"].type == "gauge"
    assert EXPORTED_METRICS["paretorm_stage_duration_seconds"].labels == ("stage",)


def test_expression_checker_rejects_unknown_metrics_and_labels() -> None:
    _check_expr('sum by (le, stage) (rate(paretorm_stage_duration_seconds_bucket{stage="forward"}[5m]))')
    bad_exprs = (
        "paretorm_queue_depth",
        "sum by (objective) (paretorm_queue_items)",
        "paretorm_batch_size",
        "rate(paretorm_objective_score_sum[5m])",  # negative buckets: prometheus_client exports no _sum
    )
    for bad in bad_exprs:
        with pytest.raises(AssertionError):
            _check_expr(bad)


def test_dashboard_queries_only_exported_metrics_and_labels() -> None:
    dashboard = _dashboard()
    exprs = _exprs(dashboard)
    for expr in exprs:
        _check_expr(expr)
    referenced = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    for family in EXPORTED_METRICS:
        assert any(name.startswith(family) for name in referenced), f"no panel shows {family}"


def test_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    assert all(p["targets"] and p["title"] for p in panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    stage_panels = [e for e in _exprs(dashboard) if "paretorm_stage_duration_seconds_bucket" in e]
    assert any(e.startswith("histogram_quantile(0.5,") for e in stage_panels)
    assert any(e.startswith("histogram_quantile(0.99,") for e in stage_panels)


def test_prometheus_scrapes_the_compose_services() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert targets == {f"{name}:8000" for name in compose["services"] if name.startswith("paretorm")}


def test_prometheus_adapter_publishes_the_hpa_metric_per_pod() -> None:
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    assert values["rules"]["default"] is False
    rules = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    assert set(rules) <= gauges(), "only per-pod gauges make sense as HPA pods metrics"
    for name, rule in rules.items():
        assert METRIC_NAME.findall(rule["seriesQuery"]) == [name]
        assert re.fullmatch(rule["name"]["matches"], name)
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    hpa_metrics = set()
    for overlay in ("cpu", "gpu"):
        for resource in render(K8S / "overlays" / overlay):
            if resource["kind"] == "HorizontalPodAutoscaler":
                hpa_metrics |= {m["pods"]["metric"]["name"] for m in resource["spec"]["metrics"]}
    assert hpa_metrics and hpa_metrics <= set(rules), "the adapter must publish every metric the HPA reads"
