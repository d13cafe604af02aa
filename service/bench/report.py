"""Ratios, the printed table, and the JSON file of a benchmark run.

Ratios are what the benchmark is for (absolute items/s depend on the machine; the ratios of engines
measured side by side, on one model and one workload, much less). A ratio whose operand did not run is
reported as "not run (...)" with the reason, never dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (ratio name, numerator scenario, denominator scenario); {single}/{batch} expand to e.g. 32x1 / 4x64.
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("http_{single} / vllm_classify_{single}", "http_{single}", "vllm_classify_{single}"),
    ("http_{batch} / vllm_classify_{batch}", "http_{batch}", "vllm_classify_{batch}"),
    ("http_{single} / in_process_{single}", "http_{single}", "in_process_{single}"),
    ("in_process packed / padded {single}", "in_process_{single}", "in_process_padded_{single}"),
    ("http_{single} / naive_{single}", "http_{single}", "naive_{single}"),
    ("grpo_shared / grpo_unshared (in-process)", "grpo_in_process_shared", "grpo_in_process_unshared"),
    ("grpo_http_groups / grpo_http_unshared", "grpo_http_groups", "grpo_http_unshared"),
    ("grpo_http_items / grpo_http_unshared", "grpo_http_items", "grpo_http_unshared"),
    ("grpo_http_groups / vllm_grpo_items", "grpo_http_groups", "vllm_grpo_items"),
    (
        "http_vllm_backend_{single} / vllm_classify_{single}",
        "http_vllm_backend_{single}",
        "vllm_classify_{single}",
    ),
    ("grpo_http_vllm_backend_groups / vllm_grpo_items", "grpo_http_vllm_backend_groups", "vllm_grpo_items"),
)


def not_run(reason: str) -> dict[str, str]:
    """How a row, ratio or section that could not be measured reads: with the reason, never dropped."""
    return {"status": f"not run ({reason})"}


def compute_ratios(scenarios: dict[str, Any], single: str, batch: str) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for label, top, bottom in RATIOS:
        names = [name.format(single=single, batch=batch) for name in (label, top, bottom)]
        a, b = scenarios.get(names[1], {}), scenarios.get(names[2], {})
        missing = [n for n, row in ((names[1], a), (names[2], b)) if row.get("items_per_s", 0) <= 0]
        if missing:
            reasons = "; ".join(f"{n}: {scenarios.get(n, {}).get('status', 'no result')}" for n in missing)
            ratios[names[0]] = f"not run ({reasons})"
        else:
            ratios[names[0]] = round(a["items_per_s"] / b["items_per_s"], 3)
    padding = scenarios.get("padding_long_tail", {})
    if padding.get("padding_ratio"):
        ratios["padding: fifo / planner"] = round(padding["fifo_padding_ratio"] / padding["padding_ratio"], 3)
    return ratios


def _cell(row: Any) -> str:
    if not isinstance(row, dict):
        return str(row)
    if "items_per_s" in row:
        extra = f"  p50 {row['p50_ms']:.0f} ms  p99 {row['p99_ms']:.0f} ms" if "p50_ms" in row else ""
        errors = f"  ERRORS {row['errors']}: {row.get('first_error', '')}" if row.get("errors") else ""
        return f"{row['items_per_s']:9.1f} items/s{extra}{errors}"
    return str(row.get("status", row))


def format_table(result: dict[str, Any]) -> str:
    scenarios = result["scenarios"]
    lines = [
        f"paretorm bench — {result['meta']['model']}, {result['meta']['dtype']}",
        f"workload: {json.dumps(result['meta']['workload'])}",
        f"forward: {json.dumps(result['meta'].get('forward'))}",
        "",
        "throughput",
    ]
    for name, row in scenarios.items():
        if name in {"pama_4096x19", "exactness_fp32", "padding_long_tail"}:
            continue
        lines.append(f"  {name:34s} {_cell(row)}")
    pama = scenarios["pama_4096x19"]
    exact = scenarios["exactness_fp32"]
    padding = scenarios["padding_long_tail"]
    lines += [
        "",
        f"PAMA {pama['shape'][0]}x{pama['shape'][1]}: best {pama['best_ms']:.3f} ms, "
        f"median {pama['median_ms']:.3f} ms "
        f"(target < {pama['target_ms']} ms)",
        f"exactness fp32, sharing on vs off ({exact['items']} items): max |score diff| "
        f"{exact['max_abs_score_diff']:.2e}, rewards {exact['max_abs_reward_diff']:.2e} -> "
        f"{'OK' if exact['ok'] else 'FAIL'} (<= {exact['tolerance']})",
        f"padding on long-tailed lengths (p50 {padding['length_p50']}, p99 {padding['length_p99']} tokens): "
        f"{'packed' if padding.get('packed') else 'padded'} planner {padding['padding_ratio']:.3f}, "
        f"padded planner {padding['padded_planner_ratio']:.3f}, first-come batching "
        f"{padding['fifo_padding_ratio']:.3f} computed/real tokens",
        "",
        "ratios",
    ]
    lines += [f"  {name:44s} {value}" for name, value in result["ratios"].items()]
    lines += ["", "paired ratios (alternating rounds on fresh items: median of the A B B A two-round means "
              "[the rounds' min - max])"]
    paired = result.get("paired", {})
    if "status" in paired:
        lines.append(f"  {paired['status']}")
    for name, row in paired.items():
        if isinstance(row, dict):
            lines.append(f"  {name:44s} {row['median']} [{row['min']} - {row['max']}] over {row['rounds']} rounds")
    lines += ["", "latency (open loop, single-item requests, at loads of each engine's own maximum)"]
    lines += _latency_lines(result["latency"])
    same = result.get("latency_same_rate", {})
    base = f" ({same['base_items_per_s']} items/s)" if "base_items_per_s" in same else ""
    lines += ["", f"latency at the same offered rates for both engines: loads of the slower one's maximum{base}"]
    lines += _latency_lines(same)
    lines += ["", "single items beside batch clients (open loop; the batch clients' items/s meanwhile)"]
    lines += _beside_lines(result.get("latency_beside_batches", not_run("not measured")))
    lines.append(f"\nwall time {result['meta']['wall_s']} s")
    return "\n".join(lines)


def _latency_lines(section: dict[str, Any]) -> list[str]:
    if "status" in section:
        return [f"  {section['status']}"]
    lines = []
    for engine, points in section.items():
        if not isinstance(points, (list, dict)):
            continue  # the section's own figures (its base rate)
        if isinstance(points, dict):
            lines.append(f"  {engine:9s} {points.get('status')}")
            continue
        for point in points:
            lines.append(
                f"  {engine:9s} {int(point['load'] * 100):3d}% = "
                f"{point['offered_items_per_s']:7.1f}/s offered, "
                f"{point['achieved_items_per_s']:7.1f}/s done: "
                f"p50 {point['p50_ms']:7.1f} ms  p99 {point['p99_ms']:7.1f} ms"
                + (f"  ERRORS {point['errors']}" if point["errors"] else "")
            )
    return lines


def _beside_lines(section: dict[str, Any]) -> list[str]:
    if "status" in section:
        return [f"  {section['status']}"]
    lines = []
    for engine, row in section.items():
        if "p50_ms" not in row:
            lines.append(f"  {engine:9s} {row.get('status')}")
            continue
        lines.append(
            f"  {engine:9s} {row['singles_per_s']:.0f}/s beside {row['batch_clients']}: "
            f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms; "
            f"batches {row['batch_items_per_s']:.1f} items/s"
            + (f"  ERRORS {row['errors']}: {row.get('first_error', '')}" if row["errors"] else "")
            + (f"  ({row['status']})" if "status" in row else "")
        )
    ours, theirs = section.get("paretorm", {}), section.get("vllm", {})
    if ours.get("p50_ms") and theirs.get("p50_ms"):
        lines.append(f"  p50 vLLM / paretorm {theirs['p50_ms'] / ours['p50_ms']:.2f}, "
                     f"p99 {theirs['p99_ms'] / ours['p99_ms']:.2f} (above 1: ours answers sooner)")
    return lines


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
