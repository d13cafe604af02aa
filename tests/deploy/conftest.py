"""Shared fixtures for the deploy tests: the overlays rendered by `kubectl kustomize`, once per session; and
the step timings of the `deploy_docker` tests, printed at the end of the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from deploy_paths import K8S, OVERLAYS
from deploy_render import Resource, render
from step_timer import TIMER

# Throwaway overlays that add the optional components, so the tests see them rendered as users would:
# name -> (the overlay it builds on, components added).
COMPOSED_OVERLAYS = {
    "full": ("gpu", ("servicemonitor", "model-from-image")),
    "keda-embedded": ("cpu", ("keda", "embedded-model")),
}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Resource]]:
    """Each overlay rendered, plus the COMPOSED_OVERLAYS (overlays with optional components added)."""
    outputs = {name: render(K8S / "overlays" / name) for name in OVERLAYS}
    for name, (overlay, components) in COMPOSED_OVERLAYS.items():
        outputs[name] = render(_composed_overlay(K8S, tmp_path_factory.mktemp(name), overlay, components))
    return outputs


def _composed_overlay(k8s: Path, directory: Path, overlay: str, components: tuple[str, ...]) -> Path:
    """Write a kustomization: `overlay` + `components`. Relative paths, as kustomize requires."""
    rel = Path(os.path.relpath(k8s, directory))
    listed = "".join(f"  - {rel / 'components' / c}\n" for c in components)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {rel / 'overlays' / overlay}\n"
        f"components:\n{listed}"
    )
    return directory


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the deploy_docker tests built and how long each step took (nothing when they did not run)."""
    lines = TIMER.report()
    if lines:
        terminalreporter.section("deploy_docker: what was built, and step timings")
        for line in lines:
            terminalreporter.write_line(line)
