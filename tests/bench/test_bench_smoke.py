"""`paretorm bench --quick --no-vllm` end to end: every scenario runs, numbers are positive, ratios are there.

Speed targets are not asserted (a shared 2-core machine is too noisy); what is asserted is that each row
was measured against a real server with answers that carried every score, that vLLM's rows say why they
did not run instead of vanishing, and that the exactness check held.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.cpu_budget import cgroup_cpu_limit
from service.model.attention_plans import kernels_here

THROUGHPUT_ROWS = (
    "in_process_16x1",
    "in_process_padded_16x1",
    "http_16x1",
    "http_2x16",
    "naive_16x1",
    "grpo_in_process_shared",
    "grpo_in_process_unshared",
    "grpo_http_groups",
    "grpo_http_items",
    "grpo_http_unshared",
)
VLLM_ROWS = (
    "vllm_classify_16x1",
    "vllm_classify_2x16",
    "vllm_grpo_items",
    "http_vllm_backend_16x1",
    "grpo_http_vllm_backend_groups",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("paretorm")),
            "bench",
            "--quick",
            "--no-vllm",
            "--json",
            str(out / "bench.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), done.stdout


def test_every_throughput_row_was_measured_without_errors(quick_run: tuple[dict, str]) -> None:
    scenarios = quick_run[0]["scenarios"]
    for name in THROUGHPUT_ROWS:
        row = scenarios[name]
        assert row["items_per_s"] > 0 and row["errors"] == 0, (name, row)
        assert row["items"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0, (name, row)
    assert scenarios["grpo_http_groups"]["items"] == 4 * 4  # every response of every group was scored


def test_vllm_rows_say_why_they_did_not_run(quick_run: tuple[dict, str]) -> None:
    result = quick_run[0]
    for name in VLLM_ROWS:
        assert result["scenarios"][name] == {"status": "not run (--no-vllm given)"}
    assert result["latency"]["vllm"]["status"].startswith("not run")
    assert result["latency_same_rate"]["status"].startswith("not run")
    assert result["ratios"]["http_16x1 / vllm_classify_16x1"].startswith("not run")


def test_http_over_in_process_is_paired_without_vllm(quick_run: tuple[dict, str]) -> None:
    """The one goal ratio that needs no vLLM runs as alternating rounds (the scorer in the bench process
    against the server), and the vLLM pairings say why they did not."""
    result, stdout = quick_run
    paired = result["paired"]
    row = paired["http_16x1 / in_process_16x1"]
    assert row["rounds"] == 2 and row["median"] > 0, row
    assert len(row["ours_items_per_s"]) == len(row["theirs_items_per_s"]) == 2, row
    assert min(row["ours_items_per_s"] + row["theirs_items_per_s"]) > 0, row
    assert paired["status"] == "not run (against vLLM: --no-vllm given)"
    assert [name for name, value in paired.items() if isinstance(value, dict)] == ["http_16x1 / in_process_16x1"]
    assert "http_16x1 / in_process_16x1" in stdout.split("paired ratios")[1]


def test_ratios_exactness_padding_pama_and_latency(quick_run: tuple[dict, str]) -> None:
    result, stdout = quick_run
    ratios = result["ratios"]
    for name in (
        "http_16x1 / in_process_16x1",
        "http_16x1 / naive_16x1",
        "grpo_shared / grpo_unshared (in-process)",
        "grpo_http_groups / grpo_http_unshared",
        "padding: fifo / planner",
        "in_process packed / padded 16x1",
    ):
        assert isinstance(ratios[name], float) and ratios[name] > 0, (name, ratios[name])
    exact = result["scenarios"]["exactness_fp32"]
    assert exact["ok"] and exact["max_abs_score_diff"] <= 1e-4 and exact["items"] == 16
    assert exact["computed_tokens_shared"] < exact["computed_tokens_unshared"]  # the prompt really was shared
    padding = result["scenarios"]["padding_long_tail"]
    assert padding["items"] == 48 and padding["computed_tokens"] >= padding["real_tokens"] > 0
    assert padding["packed"] and padding["padding_ratio"] == 1.0  # packed: every token once, no padding
    assert padding["fifo_padding_ratio"] >= padding["padded_planner_ratio"] >= 1.0
    assert padding["fifo_padding_ratio"] >= 1.0 and padding["length_max"] > 2 * padding["length_p50"]
    assert result["scenarios"]["pama_4096x19"]["best_ms"] > 0
    points = result["latency"]["paretorm"]
    assert [p["load"] for p in points] == [0.25, 0.5, 0.9]
    assert all(p["requests"] > 0 and p["errors"] == 0 and p["p99_ms"] >= p["p50_ms"] > 0 for p in points)
    assert [row["concurrency"] for row in result["concurrency_sweep"]["paretorm"]] == [4, 16]
    assert result["meta"]["workload"]["grpo_shared_prompt_tokens"] == 428
    assert result["meta"]["service_env"]["MALLOC_MMAP_THRESHOLD_"] == "33554432"
    assert result["meta"]["host"]["cpu_quota"] == cgroup_cpu_limit()  # a container's CPU limit, stated
    forward = result["meta"]["forward"]
    for side in ("server", "in_process"):  # which forward and attention kernel each chose on this machine
        assert forward[side]["attention"] in kernels_here(torch.device("cpu")), side
    # probed once by the bench before the servers started, and pinned in both
    assert forward["server"]["attention"] == forward["in_process"]["attention"] == result["meta"]["config"][
        "attention_kernel"]
    assert "ratios" in stdout and "http_16x1 / naive_16x1" in stdout
    assert "latency at the same offered rates for both engines" in stdout
    beside = result["latency_beside_batches"]
    assert beside["vllm"]["status"].startswith("not run")
    ours = beside["paretorm"]
    assert ours["requests"] > 0 and ours["errors"] == 0 and ours["p99_ms"] >= ours["p50_ms"] > 0, ours
    assert ours["batch_items_per_s"] > 0 and ours["batch_clients"] == "2x16", ours
    assert "single items beside batch clients" in stdout
