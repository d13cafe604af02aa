"""`python -m tests.reliability.faulty_serve serve ...`: the real `paretorm serve` with a faulty backend.

Test-only. It wraps whatever backend the settings build in `FaultyBackend` before the runtime is made,
then runs the ordinary CLI (so the server, drain and error handling are the production ones). Nothing in
`service/` knows about faults: the wrapping happens here, in the child process the tests start.

Faults are armed through a control file named by `PARETORM_TEST_FAULTS`, read before every forward:
- `raise`   the next forward raises (the file is consumed: one batch only);
- `hang S`  the next forward sleeps S seconds first (consumed);
- `slow S`  every forward sleeps S seconds first (kept until the file changes).
The size of each batch that raised is appended to `<control file>.raised`, so a test can check that the
500s it saw are exactly that batch's requests.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


class InjectedFault(RuntimeError):
    """The forward pass failure a test asked for."""


class FaultyBackend:
    def __init__(self, inner: Any, control: Path) -> None:
        self._inner = inner
        self._control = control
        self.name = inner.name
        self.packed = inner.packed

    def __getattr__(self, attribute: str) -> Any:  # forward, prefix caches, ...: the real backend's
        return getattr(self._inner, attribute)

    def _next_fault(self) -> list[str]:
        try:
            words = self._control.read_text().split()
        except OSError:
            return []
        if words and words[0] in {"raise", "hang"}:
            self._control.unlink(missing_ok=True)  # one batch only
        return words

    def run(self, batch: Any) -> Any:
        self._inject(batch)
        return self._inner.run(batch)

    def run_timed(self, batch: Any) -> Any:
        """The engine process's timed run, faults first (else `__getattr__` would hand out the inner one)."""
        self._inject(batch)
        if hasattr(self._inner, "run_timed"):
            return self._inner.run_timed(batch)
        started = time.perf_counter()
        return self._inner.run(batch), started, time.perf_counter()

    def _inject(self, batch: Any) -> None:
        words = self._next_fault()
        if words[:1] == ["raise"]:
            with open(f"{self._control}.raised", "a") as log:
                log.write(f"{len(batch)}\n")
            raise InjectedFault(f"injected forward failure on a batch of {len(batch)}")
        if words[:1] in (["hang"], ["slow"]):
            time.sleep(float(words[1]))


def main() -> int:
    # Imported here, not at the top: the service's judge worker is a spawned process, which imports this
    # module again, and must stay as light as it is under `paretorm serve` (39 MB, not 360 MB with torch).
    import service.runtime as runtime_module
    from service.cli import main as cli_main

    control = Path(os.environ["PARETORM_TEST_FAULTS"])
    build_backend = runtime_module.build_backend
    runtime_module.build_backend = lambda settings, loaded: FaultyBackend(build_backend(settings, loaded), control)
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
