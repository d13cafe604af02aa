"""Reliability suites (`make reliability`, marker `reliability`): a service to attack and one summary table.

Each suite records one row (suite, cases tried, failures, requests lost, the service's peak RSS) in the
session's `Summary`; the table is printed at the end of the run and written to
`runs/reliability/summary.json`, the figures the README's reliability section quotes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.reliability.traffic import status_mb

API_KEY = "reliability-key"
SUMMARY_PATH = Path("runs/reliability/summary.json")


@dataclass
class SuiteRow:
    suite: str
    cases: int = 0
    failures: int = 0
    lost: int = 0
    max_rss_mb: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first few failures, for the log
    note: str = ""  # the suite's own figures (capacity, slopes, recovery time), printed under the table


@dataclass
class Summary:
    rows: list[SuiteRow] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'suite':<44} {'cases':>7} {'failures':>9} {'lost':>5} {'max RSS MB':>11}"]
        lines += [f"{r.suite:<44} {r.cases:>7} {r.failures:>9} {r.lost:>5} {r.max_rss_mb:>11.0f}" for r in self.rows]
        lines += [f"{r.suite}: {r.note}" for r in self.rows if r.note]
        return "\n".join(lines)


_SUMMARY = Summary()


def peak_rss_mb(pid: int) -> float:
    """The peak resident sets (VmHWM) of the service's processes, summed, in MB (bounds their joint peak)."""
    return status_mb(pid, "VmHWM")


@pytest.fixture(scope="session")
def summary() -> Summary:
    return _SUMMARY


# Small limits, so every limit is reachable by generated input.
TARGET_ARGS = ["--max-input-tokens", "256", "--max-items-per-request", "64", "--max-body-bytes", "65536",
               "--max-batch-tokens", "4096", "--judge-timeout-s", "2"]


def target_process(model_dir: Path, log_dir: Path, *extra: str) -> ServiceProcess:
    """The tiny ArmoRM with auth on and TARGET_ARGS (plus `extra`)."""
    return ServiceProcess(model_dir, args=[*TARGET_ARGS, *extra], env={"PARETORM_API_KEYS": API_KEY},
                          log_path=log_dir / "serve.log")


@pytest.fixture(scope="session")
def target(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with target_process(tiny_armorm_dir, tmp_path_factory.mktemp("reliability-log")) as process:
        yield process


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: reliability suites (minutes); deselected unless -m reliability (make reliability)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the default run short: reliability suites run only when `-m` names them."""
    if "reliability" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("reliability") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("reliability") is None]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SUMMARY.rows:
        return
    terminalreporter.section("paretorm reliability")
    terminalreporter.write_line(_SUMMARY.table())
    SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_PATH.write_text(json.dumps([asdict(row) for row in _SUMMARY.rows], indent=2) + "\n")
    terminalreporter.write_line(f"written to {SUMMARY_PATH}")
