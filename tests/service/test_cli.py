"""The `paretorm` console script: instant help, subcommands owning their flags, settings errors that say how to fix."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

PARETORM = str(Path(sys.executable).with_name("paretorm"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PARETORM, *args], capture_output=True, text=True, timeout=120)


def run_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    """``paretorm ARGS`` in a fresh interpreter that must exit without having imported torch: help and a
    settings error answer at once, not after the seconds torch and transformers take to import."""
    code = ("import atexit, sys; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, "
            "file=sys.stderr)); from service.cli import main; sys.exit(main(sys.argv[1:]))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().endswith("torch imported: False"), result.stderr[-2000:]
    return result


def test_help_is_instant_and_lists_subcommands() -> None:
    started = time.perf_counter()
    result = run("--help")
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("serve", "fit", "augment", "bench"))
    assert time.perf_counter() - started < 10  # no torch import behind --help


def test_subcommands_take_their_own_flags() -> None:
    for name in ("fit", "augment", "bench", "bench-engine"):
        result = run_without_torch(name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"paretorm {name}" in result.stdout


def test_bench_rollout_refuses_a_missing_policy_or_prompts_file_in_one_line() -> None:
    cases = ((["--policy", "/no/such/policy"], "--policy /no/such/policy: not a local model directory"),
             (["--policy", "smollm2", "--prompts", "/no/such.jsonl"], "/no/such.jsonl: cannot be read"))
    for args, message in cases:
        result = run_without_torch("bench-rollout", *args)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.startswith("paretorm bench-rollout: ") and message in result.stderr


def test_fit_refuses_a_missing_backbone_or_data_file_before_torch(tmp_path: Path) -> None:
    backbone = tmp_path / "backbone"
    backbone.mkdir()
    (backbone / "config.json").write_text("{}")
    data = ["--ratings", str(tmp_path / "r.jsonl"), "--preferences", str(tmp_path / "p.jsonl"), "--out",
            str(tmp_path / "out")]  # fmt: skip
    no_backbone = run_without_torch("fit", "--backbone", str(tmp_path / "nowhere"), *data)
    assert no_backbone.returncode == 2 and "is not a local directory" in no_backbone.stderr
    no_ratings = run_without_torch("fit", "--backbone", str(backbone), *data)
    assert no_ratings.returncode == 2 and "r.jsonl: file not found" in no_ratings.stderr
    assert not (tmp_path / "out").exists()


def test_bad_serve_settings_exit_2_with_a_fix() -> None:
    missing = run_without_torch("serve", "--model", "/no/such/checkpoint")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "nothing is downloaded" in missing.stderr
    budgets = run_without_torch("serve", "--max-input-tokens", "8192", "--max-batch-tokens", "1024")
    assert budgets.returncode == 2 and "PARETORM_MAX_BATCH_TOKENS" in budgets.stderr
    tensor_parallel = run_without_torch("serve", "--tensor-parallel-size", "2")
    assert tensor_parallel.returncode == 2 and "needs --backend vllm on --device cuda" in tensor_parallel.stderr
