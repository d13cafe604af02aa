"""`paretorm bench-engine` (the device check) runs on the CPU with a tiny shape and reports every row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_engine_bench_reports_packed_padded_and_grpo_rows(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("paretorm")), "bench-engine", "--shape", "quick", "--device", "cpu",
         "--dtype", "float32", "--batch", "1,4", "--items", "8", "--grpo-prompts", "2", "--grpo-group", "3",
         "--shared-tokens", "40", "--repeats", "1", "--peak-tflops", "1.0", "--compile", "off",
         "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert set(rows) == {"chat_batch1_packed", "chat_batch1_padded", "chat_batch4_packed", "chat_batch4_padded",
                         "grpo_shared", "grpo_unshared"}  # fmt: skip
    for name, row in rows.items():
        assert row["items_per_s"] > 0 and row["tokens_per_s"] > 0 and 0 < row["mfu"], (name, row)
    assert rows["chat_batch4_packed"]["computed_tokens"] == rows["chat_batch4_packed"]["real_tokens"]
    assert rows["chat_batch4_padded"]["computed_tokens"] > rows["chat_batch4_padded"]["real_tokens"]
    # The six GRPO responses share two 40-token prompts: each prompt runs once.
    assert rows["grpo_unshared"]["computed_tokens"] - rows["grpo_shared"]["computed_tokens"] == 2 * 2 * 40
    assert result["packed_vs_padded_max_abs_score_diff"] < 1e-4  # fp32: the packed forward is exact
    assert result["shape"]["name"] == "quick" and result["peak_tflops"] == 1.0


def _profile(tmp_path: Path, compile_forward: str) -> tuple[dict, str]:
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("paretorm")), "bench-engine", "--shape", "quick", "--device", "cpu",
         "--dtype", "float32", "--batch", "4", "--items", "8", "--tokens", "60", "--profile-only",
         "--grpo-group", "2", "--shared-tokens", "40", "--compile", compile_forward, "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["profile"], done.stderr


def test_engine_profile_charges_every_op_to_a_category(tmp_path: Path) -> None:
    """`--profile-only`: per-op breakdown of packed and padded batches; the categories add up to ~the wall."""
    profile, stderr = _profile(tmp_path, "off")
    assert set(profile) == {"packed 4", "padded 4", "grpo 2x2 shared", "grpo 2x2 unshared"}
    for name, entry in profile.items():
        ms = entry["ms"]
        assert ms["gemm"] > 0 and ms["norm"] > 0 and ms["rotary"] > 0, (name, ms)
        assert abs(sum(ms.values()) - entry["wall_ms_profiled"]) < 0.25 * entry["wall_ms_profiled"] + 0.5  # medians
    assert profile["packed 4"]["ms"]["layout"] > 0 and profile["padded 4"]["ms"]["layout"] == 0
    shared, unshared = profile["grpo 2x2 shared"], profile["grpo 2x2 unshared"]
    assert shared["items_per_batch"] == unshared["items_per_batch"] == 4  # 2 groups of 2 responses
    kernels = ("attention sdpa", "attention matmul", "attention paged")  # whichever the probe chose
    assert sum(shared["ms"][kernel] for kernel in kernels) > 0
    assert "| gemm |" in stderr  # the markdown table


def test_engine_profile_of_the_compiled_forward_names_inductor_kernels(tmp_path: Path) -> None:
    """As served on CPUs: the compiled stages keep their GEMMs visible and their fused kernels get a category
    of their own, instead of reading as Python time."""
    profile, _ = _profile(tmp_path, "on")
    packed = profile["packed 4"]
    assert packed["forward"] == "packed (compiled)" and profile["padded 4"]["forward"].startswith("padded")
    ms = packed["ms"]
    assert ms["gemm"] > 0 and ms["fused (inductor)"] > 0 and ms["layout"] > 0, ms
    assert ms["norm"] == ms["rotary"] == ms["act"] == 0  # fused into the inductor kernels
    assert abs(sum(ms.values()) - packed["wall_ms_profiled"]) < 0.25 * packed["wall_ms_profiled"] + 0.5


def test_zero_grpo_prompts_leaves_out_the_grpo_rows_and_profiles(tmp_path: Path) -> None:
    """`--grpo-prompts 0` crashed (a batch of size 0); it now means chat rows only."""
    out = tmp_path / "engine.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("paretorm")), "bench-engine", "--shape", "quick",
         "--device", "cpu", "--dtype", "float32", "--batch", "2", "--items", "4", "--tokens", "40",
         "--grpo-prompts", "0",
         "--repeats", "1", "--compile", "off", "--profile", "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"chat_batch2_packed", "chat_batch2_padded"}
    assert set(result["profile"]) == {"packed 2", "padded 2"}


def test_counts_are_refused_where_they_are_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    from service.bench.cli import build_parser as bench_parser
    from service.bench.engine_bench import build_parser as engine_parser

    cases = [
        (engine_parser, ["--grpo-prompts", "-1"], "--grpo-prompts: expected an integer >= 0, got -1"),
        (engine_parser, ["--items", "0"], "--items: expected an integer >= 1, got 0"),
        (engine_parser, ["--repeats", "two"], "--repeats: expected an integer, got 'two'"),
        (bench_parser, ["--grpo-prompts", "0"], "--grpo-prompts: expected an integer >= 1, got 0"),
        (bench_parser, ["--shared-tokens", "4"], "--shared-tokens: expected an integer >= 8, got 4"),
        (bench_parser, ["--paired-rounds", "-2"], "--paired-rounds: expected an integer >= 0, got -2"),
    ]
    for parser, argv, message in cases:
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
        assert message in capsys.readouterr().err, argv
