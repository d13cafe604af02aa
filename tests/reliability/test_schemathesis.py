"""schemathesis against the service's own OpenAPI document: every operation, thousands of generated cases.

The real tool, run as its CLI (`make reliability` installs it in its own venv and names it in
`PARETORM_SCHEMATHESIS`), against a real `paretorm serve` with auth on and small limits. Checks: all of
schemathesis' (no 5xx, status codes / content types / headers / response bodies as documented, schema-invalid
data refused, missing auth refused, unsupported methods answered 405, ...) except `positive_data_acceptance`,
which expects every schema-valid body to be accepted: our bodies carry rules a JSON schema cannot state (a
`/get_reward` text must contain the chat template's assistant header, judge names come from the server's
registry at `GET /v1/judges`, PAMA's nested lists must be rectangular). That check is run and counted on its
own, as a note, not a failure. The OpenAPI document itself must load (schemathesis validates it first).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.reliability.conftest import API_KEY, SuiteRow, Summary, peak_rss_mb
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("PARETORM_SCHEMATHESIS_EXAMPLES", "1000"))


def schemathesis_cli() -> str:
    path = os.environ.get("PARETORM_SCHEMATHESIS")
    if not path or not Path(path).exists():
        pytest.fail("schemathesis is not installed: run `make reliability` (it installs it), or set "
                    "PARETORM_SCHEMATHESIS to its CLI", pytrace=False)
    return str(Path(path).resolve())  # the CLI runs in a temporary directory; make passes a relative path


def run_schemathesis(target: ServiceProcess, checks: list[str], examples: int, tmp: Path) -> tuple[int, str]:
    """(the CLI's exit code, its output)."""
    command = [schemathesis_cli(), "run", f"{target.url}/openapi.json",
               "-H", f"Authorization: Bearer {API_KEY}",
               "--max-examples", str(examples), "--workers", "2", "--continue-on-failure", "--seed", "11",
               "--report", "junit", "--report-dir", str(tmp), *checks]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=tmp,
                          env={**os.environ, "NO_COLOR": "1"})
    return done.returncode, done.stdout + done.stderr


def counts(output: str) -> tuple[int, int]:
    """(cases generated, cases that failed) from the summary line, e.g. `2469 generated, 2469 passed`."""
    match = re.search(r"(\d+) generated, (?:(\d+) found|(\d+) passed)", output)
    assert match, f"no summary line in schemathesis' output:\n{output[-3000:]}"
    generated = int(match.group(1))
    failed = re.search(r"(\d+) found (\d+) unique failures?", output)
    return generated, int(failed.group(2)) if failed else 0


@pytest.mark.timeout(2400)
def test_schemathesis_finds_nothing_on_any_operation(target: ServiceProcess, summary: Summary,
                                                     tmp_path: Path) -> None:
    row = SuiteRow("schemathesis, every operation (all checks)")
    summary.rows.append(row)
    all_but = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]
    code, output = run_schemathesis(target, all_but, EXAMPLES, tmp_path)
    row.cases, row.failures = counts(output)
    operations = re.search(r"Tested: (\d+)", output)
    _, rejected = counts(run_schemathesis(target, ["--checks", "positive_data_acceptance"], 100, tmp_path)[1])
    row.max_rss_mb = peak_rss_mb(target.process.pid)  # type: ignore[union-attr]
    row.note = (f"{operations.group(1) if operations else '?'} operations, {row.cases} cases, exit {code}; "
                f"positive_data_acceptance alone (100 per operation): {rejected} kinds of schema-valid body "
                "refused by rules the schema cannot state")
    print(row.note)  # noqa: T201 - the figures the README quotes
    assert code == 0 and row.failures == 0, output[-6000:]
    assert row.cases >= 1000, row.note
