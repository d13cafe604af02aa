"""Shared fixture for the deploy tests: the rendered kustomize overlays, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from deploy_kustomize import Resource, render
from deploy_paths import K8S, OVERLAYS


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Resource]]:
    """Each overlay rendered, plus `full`: the GPU overlay with every optional component added."""
    outputs = {name: render(K8S / "overlays" / name) for name in OVERLAYS}
    outputs["full"] = render(_full_overlay(K8S, tmp_path_factory.mktemp("full-overlay")))
    return outputs


def _full_overlay(k8s: Path, directory: Path) -> Path:
    """Write a throwaway kustomization: the GPU overlay + servicemonitor + model-from-image components.

    Relative paths, as kustomize itself requires (it rejects absolute resource paths)."""
    rel = Path(os.path.relpath(k8s, directory))
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {rel / 'overlays' / 'gpu'}\n"
        f"components:\n  - {rel / 'components' / 'servicemonitor'}\n"
        f"  - {rel / 'components' / 'model-from-image'}\n"
    )
    return directory
