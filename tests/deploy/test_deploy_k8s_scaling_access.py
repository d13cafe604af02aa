"""The optional KEDA and embedded-model components, the NetworkPolicy, and the trainer Job, as rendered by
`kubectl kustomize`: KEDA scales like the HPA it replaces, only trainer pods (and Prometheus) reach the
server, and the Job's arguments are ones `paretorm train` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_dockerfile import parse_dockerfile, resolved_env
from deploy_metrics import CONTRACT_METRICS, gauges
from deploy_paths import K8S, OVERLAYS, REPO
from deploy_render import Resource, find, render
from deploy_settings import service_settings

from service.training.cli import parse as parse_train_args

TRAINER_LABEL = {"paretorm.io/role": "trainer"}
IMAGE_SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages/"


def _pod_spec(resources: list[Resource]) -> dict:
    return find(resources, "Deployment", "paretorm")["spec"]["template"]["spec"]


def _trainer_job() -> Resource:
    return find(render(K8S / "trainer"), "Job", "paretorm-train-grpo")


def _final_stage_env() -> dict[str, str]:
    instructions = parse_dockerfile((REPO / "Dockerfile").read_text())
    return resolved_env(instructions, max(i.stage for i in instructions))


def test_keda_scaledobject_replaces_the_hpa_with_the_same_policy(rendered: dict[str, list[Resource]]) -> None:
    resources = rendered["keda-embedded"]
    assert not [r for r in resources if r["kind"] == "HorizontalPodAutoscaler"], "KEDA owns the HPA"
    hpa = find(rendered["cpu"], "HorizontalPodAutoscaler", "paretorm")["spec"]
    scaled = find(resources, "ScaledObject", "paretorm")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == hpa["scaleTargetRef"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"])
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["threshold"] == hpa["metrics"][0]["pods"]["target"]["averageValue"]
    query = trigger["metadata"]["query"]
    assert "paretorm_queue_items" in query and "paretorm_queue_items" in gauges() & CONTRACT_METRICS


def test_embedded_model_component_serves_the_image_default(rendered: dict[str, list[Resource]]) -> None:
    resources = rendered["keda-embedded"]
    config = find(resources, "ConfigMap", "paretorm-config")["data"]
    assert "PARETORM_MODEL" not in config
    service_settings(config)
    pod = _pod_spec(resources)
    assert "model" not in {v["name"] for v in pod["volumes"]}
    (server,) = pod["containers"]
    mounts = [m["mountPath"] for m in server["volumeMounts"]]
    assert "/models" not in mounts
    image_model = _final_stage_env()["PARETORM_MODEL"]
    assert image_model.startswith("/opt/"), "the image's own model, on the read-only root"
    assert not any(image_model.startswith(m) for m in mounts), "no volume may hide the built-in model"
    assert server["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full", "keda-embedded"])
def test_network_policy_admits_only_trainers_and_prometheus(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    policy = find(resources, "NetworkPolicy", "paretorm")["spec"]
    pod_labels = find(resources, "Deployment", "paretorm")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
    assert all(rule["ports"] == [{"port": "http", "protocol": "TCP"}] for rule in policy["ingress"])
    assert all(
        peer.get("podSelector") or peer.get("namespaceSelector", {}).get("matchLabels") for peer in peers
    )
    trainer_peers = [p for p in peers if p.get("podSelector", {}).get("matchLabels") == TRAINER_LABEL]
    assert trainer_peers, "trainer pods must be let in"
    monitoring = [p for p in peers if "podSelector" not in p]
    assert [p["namespaceSelector"]["matchLabels"] for p in monitoring] == [
        {"kubernetes.io/metadata.name": "monitoring"}
    ]


def test_trainer_job_reaches_the_service_as_a_trainer(rendered: dict[str, list[Resource]]) -> None:
    job = _trainer_job()
    template = job["spec"]["template"]
    assert TRAINER_LABEL.items() <= template["metadata"]["labels"].items(), (
        "the label the NetworkPolicy admits"
    )
    (trainer,) = template["spec"]["containers"]
    env = {e["name"]: e for e in trainer["env"]}
    service = find(rendered["cpu"], "Service", "paretorm")
    assert (
        env["PARETORM_URL"]["value"]
        == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    )
    assert env["PARETORM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    # `paretorm train` reads it (test_cli_and_state.py): torch threads = the CPUs the Job requests
    assert env["PARETORM_TORCH_THREADS"]["valueFrom"] == {
        "resourceFieldRef": {"resource": "requests.cpu", "divisor": "1"}
    }
    assert trainer["image"] == "paretorm-trainer:0.1.0-cuda"
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert template["spec"]["securityContext"]["runAsUser"] == 10001
    assert template["spec"]["restartPolicy"] == "Never"


def _repo_prompts(args: list[str]) -> list[str]:
    """The image's prompts path, mapped onto the repo's copy of the same package data."""
    return [a.replace(IMAGE_SITE_PACKAGES, f"{REPO}/") for a in args]


def test_trainer_job_and_compose_arguments_parse_with_paretorm_train(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETORM_URL", "http://paretorm:8000")
    (trainer,) = _trainer_job()["spec"]["template"]["spec"]["containers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["trainer"]
    command = [c.replace("${TRAIN_STEPS:-20}", "20") for c in compose["command"]]
    for args in (trainer["args"], command):
        prompts = next(a for a in args if a.startswith("--prompts="))
        assert Path(_repo_prompts([prompts])[0].removeprefix("--prompts=")).is_file()
        algorithm, run, _ = parse_train_args(_repo_prompts(args))
        assert algorithm == "grpo" and str(run.policy) == "smollm2"
        assert run.reward_url == "http://paretorm:8000"
    assert compose["environment"]["PARETORM_URL"] == "http://paretorm:8000"
    assert compose["depends_on"]["paretorm"]["condition"] == "service_healthy"
    assert compose["build"]["target"] == "trainer" and compose["profiles"] == ["trainer"]


def test_dockerfile_trainer_target_runs_paretorm_train_as_10001() -> None:
    instructions = parse_dockerfile((REPO / "Dockerfile").read_text())
    stage = next(i.stage for i in instructions if i.keyword == "FROM" and i.args.endswith(" AS trainer"))
    own = [i for i in instructions if i.stage == stage]
    (entrypoint,) = [i for i in own if i.keyword == "ENTRYPOINT"]
    assert entrypoint.exec_form() == ["paretorm", "train"]
    assert [i.args for i in own if i.keyword == "USER"] == ["10001:10001"]
    python_version = next(i.args for i in instructions if i.args.startswith("PYTHON_VERSION="))
    assert f"python{python_version.split('=')[1]}" in IMAGE_SITE_PACKAGES, (
        "prompts path follows the base's Python"
    )
