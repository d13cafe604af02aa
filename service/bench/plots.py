"""PNG charts of a benchmark run (only with `--plot`): throughput vs concurrency, latency vs load.

matplotlib is imported here, lazily, with the Agg backend, so the benchmark runs without a display and
without matplotlib unless charts are asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    shape = result["meta"]["config"]["shape"]
    title = (
        f"hidden {shape['hidden']}, {shape['layers']} layers, {shape['heads']} heads, "
        f"{shape['objectives']} objectives, {result['meta']['dtype']}"
    )
    colors = {"paretorm": "tab:blue", "vllm": "tab:orange"}

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine, points in result["concurrency_sweep"].items():
        if points:
            ax.plot(
                [p["concurrency"] for p in points],
                [p["items_per_s"] for p in points],
                marker="o",
                label=engine,
                color=colors.get(engine),
            )
    naive = [
        row for name, row in result["scenarios"].items() if name.startswith("naive_") and "items_per_s" in row
    ]
    for row in naive:
        ax.scatter([row["concurrency"]], [row["items_per_s"]], marker="x", color="grey", label="naive floor")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent single-item clients")
    ax.set_ylabel("items / s")
    path = out_dir / "throughput_vs_concurrency.png"
    written.append(_finish(plt, fig, ax, "Throughput vs concurrency\n" + title, path))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine, points in result["latency"].items():
        if isinstance(points, list) and points:
            x = [p["achieved_items_per_s"] for p in points]
            color = colors.get(engine)
            ax.plot(x, [p["p50_ms"] for p in points], marker="o", color=color, label=f"{engine} p50")
            ax.plot(
                x,
                [p["p99_ms"] for p in points],
                marker="^",
                linestyle="--",
                color=color,
                label=f"{engine} p99",
            )
    ax.set_xlabel("load (items / s, open-loop Poisson)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    written.append(_finish(plt, fig, ax, "Latency vs load\n" + title, out_dir / "latency_vs_load.png"))
    return written


def _finish(plt: Any, fig: Any, ax: Any, title: str, path: Path) -> Path:
    """Title, grid and legend, then write the PNG and free the figure."""
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
