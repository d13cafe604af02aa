"""Trainers reach the reward service only over HTTP: they never import the server's machinery.

The allowed imports are `service.objectives` (pure maths shared with the service), `service.preference`
(the preference readers and loss shared with `paretorm fit`), `service.default_model`'s backbone locator
(for `--policy smollm2`), `clients`, torch/transformers/vllm and the standard library.
`paretorm train --help` must stay instant: argument parsing imports no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import service.training

FORBIDDEN = ("service.api", "service.app", "service.server", "service.runtime", "service.scoring",
             "service.engine", "service.model", "service.fitting", "service.bench", "fastapi", "uvicorn")  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_training_modules_import_no_server_machinery() -> None:
    root = Path(service.training.__file__).parent
    offenders = {
        f"{path.name}: {name}"
        for path in root.glob("*.py")
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not offenders, f"trainers must reach the service over HTTP only: {sorted(offenders)}"


def test_importing_every_trainer_pulls_no_server_packages() -> None:
    code = (
        "import sys\n"
        "import service.training.grpo, service.training.noon_ppo, service.training.dpa, service.training.run\n"
        "import service.training.modpo, service.training.modpo_sweep, service.training.mapl\n"
        f"bad = [m for m in sys.modules if m.startswith({FORBIDDEN!r})]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_train_help_is_instant_and_torch_free() -> None:
    code = (
        "import sys\n"
        "from service.training.cli import build_parser\n"
        "build_parser().format_help()\n"
        "assert 'torch' not in sys.modules, 'argument parsing imported torch'\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.perf_counter() - started < 10


def test_trainer_extra_does_not_pull_the_web_stack() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for extra in ("trainer", "trainer-cpu"):
        joined = " ".join(extras[extra])
        assert "fastapi" not in joined and "uvicorn" not in joined and "paretorm[service]" not in joined, extra


def test_the_shared_preference_package_depends_on_neither_side() -> None:
    """`service.preference` is imported by both `service.fitting` and `service.training`: it imports neither."""
    root = Path(service.training.__file__).parents[1] / "preference"
    offenders = {
        f"{path.name}: {name}"
        for path in root.glob("*.py")
        for name in _imports(path)
        if name.startswith("service.") and not name.startswith("service.preference")
    }
    assert not offenders, sorted(offenders)
