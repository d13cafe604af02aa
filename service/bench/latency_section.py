"""The latency part of a benchmark run: open-loop points at loads of each engine's own maximum (the issue's
goal), and both engines at the same offered rates (like for like).

Each engine is loaded with fresh chat items (vLLM's as chat-templated text), so no point sees another's
items in a prefix cache. `settle` waits for the servers to go idle before a point (vLLM's CPU server spins
on for about a second after its load ends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.bench.loadgen import Target
from service.bench.report import not_run
from service.bench.scenarios_http import latency_points, point_rates, same_rate_points, units_needed
from service.bench.workload import ChatItem, WorkloadSource, rendered_texts


def latency_sections(
    ours: Target,
    theirs: Target | None,
    peaks: tuple[dict[str, Any], dict[str, Any]],
    source: WorkloadSource,
    tokenizer: Any,
    *,
    loads: tuple[float, ...],
    seconds: float,
    seed: int,
    settle: Callable[[], object],
    why_not_theirs: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`latency`, `latency_same_rate`) of a run; `peaks` are the two engines' 32 x 1 rows (their items/s
    is each one's maximum); `theirs` is None when vLLM did not run, and its rows then say `why_not_theirs`."""
    settle()

    def as_text(items: list[ChatItem]) -> list[Any]:  # vLLM's /classify takes chat-templated text
        return rendered_texts(tokenizer, items)

    def own_max(target: Target, peak_row: dict[str, Any], shape: Callable[[list[ChatItem]], list[Any]]) -> Any:
        peak = float(peak_row.get("items_per_s", 0.0))
        if peak <= 0:
            return not_run("no maximum throughput was measured")
        units = shape(source.chat(units_needed(point_rates(loads, peak), seconds)))
        return latency_points(target, units, max_items_per_s=peak, fractions=loads, duration_s=seconds, seed=seed)

    latency = {"paretorm": own_max(ours, peaks[0], list)}
    if theirs is None:
        return {**latency, "vllm": not_run(why_not_theirs)}, not_run(why_not_theirs)
    latency["vllm"] = own_max(theirs, peaks[1], as_text)
    rates = [float(row.get("items_per_s", 0.0)) for row in peaks]
    if min(rates) <= 0:
        return latency, not_run("an engine's maximum throughput was not measured")
    base = min(rates)
    needed = units_needed(point_rates(loads, base), seconds)
    same = same_rate_points(
        {"paretorm": (ours, source.chat(needed)), "vllm": (theirs, as_text(source.chat(needed)))},
        base_items_per_s=base, fractions=loads, duration_s=seconds, seed=seed + 100, settle=settle,
    )  # fmt: skip
    return latency, {"base_items_per_s": round(base, 2), **same}
