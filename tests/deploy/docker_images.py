"""Build the images the `deploy_docker` tests run: the paretorm CPU server and a local Prometheus.

Builds use BuildKit (the Dockerfile's `RUN --mount=type=secret` needs it, and it skips stages the target does
not need, such as the trainer's vLLM install): `docker buildx build` where the buildx plugin exists, else
the Docker CLI's built-in BuildKit client (`DOCKER_BUILDKIT=1`, in Debian's docker.io 20.10 CLI; newer CLIs
dropped it in favour of buildx). No `# syntax=` line, so nothing is pulled for the frontend.

The Prometheus image is Debian's `prometheus` binary (from the host package, linked against glibc only) on
the local base, laid out like prom/prometheus (`/bin/prometheus`, data in `/prometheus`, user nobody), so
docker-compose.yml runs it unchanged through `PROMETHEUS_IMAGE`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from docker_host import run
from pip_settings import BuildPipSettings

PROMETHEUS_TAG = "paretorm-test/prometheus:debian"
PROMETHEUS_DOCKERFILE = Path(__file__).parent / "images" / "prometheus.Dockerfile"


@dataclass(frozen=True)
class BuildCommand:
    """How to run a BuildKit build here: the argv prefix and the environment it needs."""

    argv: tuple[str, ...]
    env: dict[str, str]


def buildkit_command() -> BuildCommand:
    """`docker buildx build` if available, else a CLI with built-in BuildKit (Docker < 23)."""
    if run("docker", "buildx", "version", check=False).returncode == 0:
        return BuildCommand(("docker", "buildx", "build", "--load"), dict(os.environ))
    for candidate in ("/usr/bin/docker", shutil.which("docker") or "docker"):
        version = run(candidate, "version", "--format", "{{.Client.Version}}", check=False).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return BuildCommand((candidate, "build"), {**os.environ, "DOCKER_BUILDKIT": "1"})
    raise RuntimeError(
        "no BuildKit client: install the buildx plugin (Debian: docker-buildx) or Debian's docker.io CLI"
    )


def build_image(
    context: Path,
    tag: str,
    build_args: dict[str, str],
    *,
    dockerfile: Path | None = None,
    target: str | None = None,
    secrets: dict[str, Path] | None = None,
    log_path: Path,
) -> None:
    """One BuildKit build on the host network; the full build log goes to `log_path`."""
    command = buildkit_command()
    argv = [*command.argv, "--progress=plain", "--network=host", "-t", tag]
    for name, value in build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    for name, path in (secrets or {}).items():
        argv += ["--secret", f"id={name},src={path}"]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    if target is not None:
        argv += ["--target", target]
    with log_path.open("w") as log:
        done = subprocess.run(
            ["nice", "-n", "10", *argv, str(context)], stdout=log, stderr=subprocess.STDOUT,
            env=command.env, timeout=3600,
        )  # fmt: skip
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"docker build of {tag} failed (log {log_path}):\n{tail}")


def build_service_image(repo: Path, tag: str, base_image: str, pip: BuildPipSettings, log_path: Path) -> None:
    """The CPU server image, built from the repo's Dockerfile unchanged, against `base_image`."""
    # The CPU torch wheel comes from the host's own indexes or wheel folders (PIP_FIND_LINKS); TORCH_INDEX is
    # then the host's main index, since the PyTorch index may be unreachable.
    torch_index = pip.build_args.get("PIP_INDEX_URL", "https://pypi.org/simple")
    build_args = {"BASE_IMAGE": base_image, "TORCH_INDEX": torch_index, **pip.build_args}
    secrets = {"pip-ca": pip.ca_bundle} if pip.ca_bundle else {}
    build_image(repo, tag, build_args, target="runtime", secrets=secrets, log_path=log_path)


def build_prometheus_image(base_image: str, log_path: Path, tag: str = PROMETHEUS_TAG) -> None:
    """Debian's prometheus binary on the local base, in a throwaway build context."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("no prometheus binary; `apt-get install prometheus`")
    with tempfile.TemporaryDirectory(prefix="paretorm-prometheus-") as tmp:
        shutil.copy2(binary, Path(tmp) / "prometheus")
        build_image(
            Path(tmp), tag, {"BASE_IMAGE": base_image}, dockerfile=PROMETHEUS_DOCKERFILE, log_path=log_path
        )


def image_summary(tag: str) -> str:
    """`tag  id  size  created` for the report of what was built."""
    out = run("docker", "image", "inspect", tag, "--format", "{{.Id}} {{.Size}} {{.Created}}").stdout.split()
    image_id, size, created = out[0], int(out[1]), out[2]
    return f"{tag}  {image_id[7:19]}  {size / 1e6:.0f} MB  {created[:19]}"


def image_user_and_healthcheck(tag: str) -> tuple[str, bool]:
    """The image's USER and whether it declares a HEALTHCHECK."""
    out = run(
        "docker", "image", "inspect", tag, "--format", "{{.Config.User}}|{{if .Config.Healthcheck}}yes{{end}}"
    ).stdout.strip()
    user, _, health = out.partition("|")
    return user, health == "yes"
