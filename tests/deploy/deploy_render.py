"""Render kustomizations with the real `kubectl kustomize` (kustomize v5 built into kubectl).

The deploy tests check the invariants the service depends on (probe routes, drain timing, GPU limits) on the
*rendered* objects, after every patch and component, exactly as `kubectl apply -k` would send them. kubectl
is part of this machine image; where it is missing the tests fail with the install hint rather than skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILE = "kustomization.yaml"

Resource = dict[str, Any]


def kubectl() -> str:
    """The kubectl binary; an AssertionError with the fix when there is none."""
    path = shutil.which("kubectl")
    assert path, (
        "kubectl is not installed: the deploy tests render with `kubectl kustomize` (kubectl >= 1.27)"
    )
    return path


def render(directory: Path) -> list[Resource]:
    """`kubectl kustomize DIRECTORY`, parsed: the objects `kubectl apply -k` would apply."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    """The one rendered object of `kind` (and `name`, if given); fails if there are none or several."""
    found = [
        r for r in resources if r.get("kind") == kind and (name is None or r["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        raise LookupError(f"expected one {kind} {name or ''} in the rendered output, found {len(found)}")
    return found[0]
