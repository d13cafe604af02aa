"""The objectives package must stay importable without torch: trainers and light tools import it."""

from __future__ import annotations

import subprocess
import sys


def test_objectives_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import service.objectives, service.objectives.judges, service.objectives.mapl_cli\n"
        "assert 'torch' not in sys.modules, 'service.objectives pulled in torch'\n"
        "assert 'fastapi' not in sys.modules, 'service.objectives pulled in fastapi'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
