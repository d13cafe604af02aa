"""Kubernetes manifests: every file parses and lints, complete objects pass strict schema validation, and
the rendered overlays (`kubectl kustomize`) keep the invariants the service depends on (probe routes, drain
timing, non-root, GPU).

`kubectl apply --dry-run=client` is not used: even in client mode kubectl asks the API server for its
discovery and OpenAPI documents (`failed to download openapi ... localhost:8080`), so without a cluster it
cannot run. Strict schema validation with kubernetes-validate covers what it would check offline."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from deploy_dockerfile import parse_dockerfile
from deploy_metrics import CONTRACT_METRICS, gauges
from deploy_paths import K8S, OVERLAYS, REPO
from deploy_render import KUSTOMIZATION_FILE, Resource, find
from deploy_settings import service_settings
from yamllint import config as yamllint_config
from yamllint import linter

# Oldest Kubernetes we support (autoscaling/v2, policy/v1 PDB, seccompProfile field) and the newest schema.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
KUSTOMIZE_GROUP = "kustomize.config.k8s.io"
CRD_GROUPS = {"monitoring.coreos.com", "keda.sh"}
HELM_VALUES = {K8S / "prometheus-adapter" / "values.yaml"}
ALLOWED_DTYPES = {"float32", "bfloat16"}
ALLOWED_DEVICES = {"cpu", "cuda"}


def _yaml_files(root: Path) -> list[Path]:
    return sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")])


def _patch_files() -> set[Path]:
    patches = set()
    for kfile in K8S.rglob(KUSTOMIZATION_FILE):
        for entry in yaml.safe_load(kfile.read_text()).get("patches", []):
            if "path" in entry:
                patches.add((kfile.parent / entry["path"]).resolve())
    return patches


def _complete_manifests() -> list[Path]:
    """Files holding whole objects (base resources, examples, CRD objects), not kustomizations or patches."""
    skip = _patch_files() | HELM_VALUES
    return [p for p in _yaml_files(K8S) if p.name != KUSTOMIZATION_FILE and p.resolve() not in skip]


def _group(resource: Resource) -> str:
    return resource["apiVersion"].rpartition("/")[0]


def _validate_strict(resource: Resource) -> None:
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            raise AssertionError(
                f"{resource['kind']}/{resource['metadata']['name']} invalid for Kubernetes {version} at "
                f"{path}: {error.message}"
            ) from None


def _pod_spec(resources: list[Resource]) -> dict:
    return find(resources, "Deployment", "paretorm")["spec"]["template"]["spec"]


def _server(resources: list[Resource]) -> dict:
    containers = _pod_spec(resources)["containers"]
    assert [c["name"] for c in containers] == ["paretorm"], "one server container named paretorm"
    return containers[0]


def _config(resources: list[Resource]) -> dict[str, str]:
    return find(resources, "ConfigMap", "paretorm-config")["data"]


# --- every file -----------------------------------------------------------------------------------------


def test_every_yaml_file_parses_and_is_accounted_for() -> None:
    files = _yaml_files(K8S)
    assert len(files) >= 15
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
    for patch in _patch_files():
        assert patch.is_file(), f"a kustomization names a patch file that does not exist: {patch}"


def test_yamllint_passes_on_deploy_and_compose() -> None:
    conf = yamllint_config.YamlLintConfig(file=str(REPO / ".yamllint"))
    targets = [*_yaml_files(REPO / "deploy"), REPO / "docker-compose.yml", REPO / ".yamllint"]
    problems = [
        f"{path.relative_to(REPO)}:{p.line}:{p.column} {p.level} {p.desc} ({p.rule})"
        for path in targets
        for p in linter.run(path.read_text(), conf, str(path))
    ]
    assert problems == []


def test_complete_manifests_validate_strictly() -> None:
    kinds = set()
    for path in _complete_manifests():
        for resource in yaml.safe_load_all(path.read_text()):
            if _group(resource) in CRD_GROUPS:
                continue  # no bundled schema; structural checks below
            _validate_strict(resource)
            kinds.add(resource["kind"])
    expected = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job"}
    expected |= {"NetworkPolicy"}
    assert expected | {"Secret", "PersistentVolumeClaim"} <= kinds


def test_strict_validation_catches_a_bad_field() -> None:
    """Guards the guard: strict mode must reject an unknown field, or the test above proves nothing."""
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(AssertionError, match="pathh"):
        _validate_strict(deployment)


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full", "keda-embedded"])
def test_rendered_overlay_validates_strictly(rendered: dict[str, list[Resource]], overlay: str) -> None:
    for resource in rendered[overlay]:
        if _group(resource) not in CRD_GROUPS:
            _validate_strict(resource)


# --- invariants of the rendered overlays ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_probes_use_health_routes_on_the_named_port(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    server = _server(rendered[overlay])
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in server["ports"]
    expected = {
        "livenessProbe": "/health/live",
        "startupProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    for probe, path in expected.items():
        assert server[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "big models need >= 10 min to load"


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_service_pdb_and_hpa_point_at_the_deployment(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    deployment = find(resources, "Deployment", "paretorm")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    service = find(resources, "Service", "paretorm")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    headless = find(resources, "Service", "paretorm-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == service["spec"]["selector"]
    assert headless["spec"]["ports"] == service["spec"]["ports"]

    pdb = find(resources, "PodDisruptionBudget", "paretorm")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    hpa = find(resources, "HorizontalPodAutoscaler", "paretorm")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "paretorm",
    }
    assert hpa["spec"]["minReplicas"] >= 2, "a PDB with maxUnavailable 1 needs 2 replicas to allow drains"
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_hpa_scales_on_an_exported_per_pod_gauge(rendered: dict[str, list[Resource]], overlay: str) -> None:
    hpa = find(rendered[overlay], "HorizontalPodAutoscaler", "paretorm")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "paretorm_queue_items"
    assert metric["pods"]["metric"]["name"] in gauges() & CONTRACT_METRICS
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert float(metric["pods"]["target"]["averageValue"]) > 0


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_configuration_comes_from_paretorm_settings(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    config = _config(resources)
    assert all(key.startswith("PARETORM_") for key in config), sorted(config)
    assert all(isinstance(value, str) for value in config.values()), "ConfigMap values must be strings"
    assert config["PARETORM_HOST"] == "0.0.0.0", "the default 127.0.0.1 is unreachable from the Service"
    assert config["PARETORM_PORT"] == "8000"
    assert config["PARETORM_DTYPE"] in ALLOWED_DTYPES and config["PARETORM_DEVICE"] in ALLOWED_DEVICES
    settings = service_settings(config)
    assert settings.max_queue_tokens >= settings.max_batch_tokens
    assert Path(config["PARETORM_MODEL"]).is_absolute()

    server = _server(resources)
    assert server["envFrom"] == [{"configMapRef": {"name": "paretorm-config"}}]
    env = {e["name"]: e for e in server["env"]}
    assert "PARETORM_API_KEYS" not in config, "API keys belong in a Secret"
    assert env["PARETORM_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "paretorm-api-keys",
        "key": "api-keys",
    }
    assert env["HF_HUB_OFFLINE"]["value"] == "1", "nothing may download at run time"


def test_example_secret_matches_the_deployment_reference() -> None:
    secret = yaml.safe_load((K8S / "examples" / "secret-api-keys.yaml").read_text())
    assert secret["metadata"]["name"] == "paretorm-api-keys"
    assert set(secret["stringData"]) == {"api-keys"}
    assert "REPLACE" in secret["stringData"]["api-keys"], "the example must hold a placeholder, not a key"
    base = yaml.safe_load((K8S / "base" / KUSTOMIZATION_FILE).read_text())
    assert not any("secret" in entry for entry in base["resources"]), "the Secret is not part of the base"


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_model_cache_and_tmp_are_mounted_on_a_read_only_root(
    rendered: dict[str, list[Resource]], overlay: str
) -> None:
    resources = rendered[overlay]
    pod, server, config = _pod_spec(resources), _server(resources), _config(resources)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert server["securityContext"]["readOnlyRootFilesystem"] is True

    model_mount = next(m for path, m in mounts.items() if config["PARETORM_MODEL"].startswith(path + "/"))
    assert model_mount["readOnly"] is True and model_mount["name"] == "model"
    assert len(set(volumes["model"]) - {"name"}) == 1, "exactly one volume source for the weights"
    for path in (config["PARETORM_CACHE_DIR"], "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], f"{path} must be a writable emptyDir"


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_runs_as_the_image_user_not_root(rendered: dict[str, list[Resource]], overlay: str) -> None:
    pod = _pod_spec(rendered[overlay])
    user = next(
        i for i in reversed(parse_dockerfile((REPO / "Dockerfile").read_text())) if i.keyword == "USER"
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user.args.split(":")[0] != "0"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context.get("runAsUser", 10001) != 0


@pytest.mark.parametrize("overlay", [*OVERLAYS, "full"])
def test_grace_period_outlasts_the_prestop_sleep(rendered: dict[str, list[Resource]], overlay: str) -> None:
    pod = _pod_spec(rendered[overlay])
    command = _server(rendered[overlay])["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    sleep = int(command[1])
    assert 2 <= sleep <= 15, "long enough for endpoint removal to propagate, short enough to leave drain time"
    drain = service_settings(_config(rendered[overlay])).drain_timeout_s
    assert drain >= 30, "a full queue needs time to finish"
    assert pod["terminationGracePeriodSeconds"] >= sleep + drain + 5, "SIGKILL must not cut the drain short"


def test_prometheus_annotations_match_the_port(rendered: dict[str, list[Resource]]) -> None:
    template = find(rendered["cpu"], "Deployment", "paretorm")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }


def test_cpu_overlay_sizes_threads_by_its_cpu_request_alone(rendered: dict[str, list[Resource]]) -> None:
    resources = rendered["cpu"]
    server = _server(resources)
    assert server["image"] == "paretorm:0.1.0-cpu"
    assert _config(resources)["PARETORM_DEVICE"] == "cpu"
    assert server["resources"]["requests"] == server["resources"]["limits"], "Guaranteed QoS"
    # torch threads come from the pod's own CPU request through the downward API (and the limit's quota
    # caps them too, test_cpu_budget.py): a number written beside the request would be a second to edit.
    env = {e["name"]: e for e in server["env"]}
    assert "OMP_NUM_THREADS" not in env
    assert env["PARETORM_TORCH_THREADS"]["valueFrom"] == {
        "resourceFieldRef": {"resource": "requests.cpu", "divisor": "1"}
    }
    assert "nvidia.com/gpu" not in server["resources"]["limits"]
    assert "tolerations" not in _pod_spec(resources)


def test_gpu_overlay_requests_a_gpu_and_bfloat16(rendered: dict[str, list[Resource]]) -> None:
    resources = rendered["gpu"]
    pod, server, config = _pod_spec(resources), _server(resources), _config(resources)
    assert server["image"] == "paretorm:0.1.0-cuda"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["resources"]["requests"]["nvidia.com/gpu"] == 1, "extended resources: requests == limits"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]
    assert (config["PARETORM_DEVICE"], config["PARETORM_DTYPE"]) == ("cuda", "bfloat16")
    # The base's settings and mounts survive the patches.
    assert config["PARETORM_MODEL"] == "/models/armorm"
    assert {v["name"] for v in pod["volumes"]} == {"model", "cache", "tmp", "dshm"}
    assert server["resources"]["limits"]["memory"] == "32Gi"
    hpa = find(resources, "HorizontalPodAutoscaler", "paretorm")
    assert hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "256"


def test_model_from_image_component_swaps_the_claim_for_an_init_copy(
    rendered: dict[str, list[Resource]],
) -> None:
    pod = _pod_spec(rendered["full"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" not in volumes["model"] and "emptyDir" in volumes["model"]
    (init,) = pod["initContainers"]
    assert {"name": "model", "mountPath": "/models"} in init["volumeMounts"]
    assert "/models/" in " ".join(init["command"])
    assert any(m["name"] == "model" and m["readOnly"] for m in _server(rendered["full"])["volumeMounts"])


def test_servicemonitor_scrapes_the_service_metrics_port(rendered: dict[str, list[Resource]]) -> None:
    """ServiceMonitor is a CRD with no bundled schema: check its structure by hand."""
    resources = rendered["full"]
    monitor = find(resources, "ServiceMonitor", "paretorm")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    service = find(resources, "Service", "paretorm")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert not any(r["kind"] == "ServiceMonitor" for r in rendered["cpu"] + rendered["gpu"]), "optional only"
