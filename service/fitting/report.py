"""The fit report: ``report.json`` (every number the stages produced) and ``report.png`` (three panels).

Panels: per-objective validation correlation of the stage-1 heads; the gate's weights over held-out
sample prompts (a heatmap, rows = prompts, columns = objectives); the debiasing λ per objective. matplotlib
(the ``fit`` extra) is imported lazily with the Agg backend, so fitting works headless.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.fitting.debias import DebiasResult
from service.fitting.gating_fit import GatingFitResult
from service.fitting.regression import RegressionResult


def _num(x: float) -> float | None:
    """JSON has no NaN: undefined numbers become null."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def build_report(
    *,
    objectives: Sequence[str],
    regression: RegressionResult,
    debias: DebiasResult | None,
    gating: GatingFitResult,
    sample_prompts: Sequence[str],
    sample_gating: np.ndarray,
    data: dict[str, Any],
) -> dict[str, Any]:
    stage1 = [
        {
            "objective": f.name, "alpha": f.alpha, "val_mse": _num(f.val_mse), "val_pearson": _num(f.val_pearson),
            "n_train": f.n_train, "n_val": f.n_val,
            "mse_by_alpha": {repr(a): _num(m) for a, m in f.mse_by_alpha.items()},
        }
        for f in regression.objectives
    ]  # fmt: skip
    debias_part: dict[str, Any] | None = None
    if debias is not None:
        debias_part = {
            "verbosity_objective": objectives[debias.verbosity_index],
            "lambdas": {n: float(debias.lambdas[i]) for i, n in enumerate(objectives)},
            "reached_threshold": {n: bool(debias.reached[i]) for i, n in enumerate(objectives)},
            "spearman_before": {n: _num(debias.corr_before[i]) for i, n in enumerate(objectives)},
            "spearman_after": {n: _num(debias.corr_after[i]) for i, n in enumerate(objectives)},
        }
    stage2 = {
        "val_accuracy": _num(gating.val_accuracy),
        "train_accuracy": _num(gating.train_accuracy),
        "uniform_weights_val_accuracy": _num(gating.uniform_val_accuracy),
        "single_objective_val_accuracy": {
            n: _num(a) for n, a in zip(objectives, gating.per_objective_val_accuracy, strict=True)
        },
        "intra_val_accuracy": _num(gating.intra_val_accuracy) if gating.intra_val_accuracy is not None else None,
        "n_train": gating.n_train,
        "n_val": gating.n_val,
        "loss_curve": [[s, _num(loss)] for s, loss in gating.losses],
        "logit_scale": float(gating.gating.logit_scale.detach()[0]),
    }
    return {
        "objectives": list(objectives),
        "stage1": stage1,
        "debias": debias_part,
        "stage2": stage2,
        "gating_samples": {
            "prompts": list(sample_prompts),
            "weights": [[float(w) for w in row] for row in np.asarray(sample_gating)],
        },
        "data": data,
    }


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return json_path, plot_report(report, out / "report.png")


def plot_report(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = report["objectives"]
    fig, axes = plt.subplots(1, 3, figsize=(18, max(4.0, 0.35 * len(names) + 1.5)))
    corr = [s["val_pearson"] if s["val_pearson"] is not None else 0.0 for s in report["stage1"]]
    axes[0].barh(names, corr, color="tab:blue")
    axes[0].set_xlim(min(0.0, *corr), 1.0)
    axes[0].set_title("stage 1: validation Pearson r per objective")
    axes[0].invert_yaxis()

    samples = report["gating_samples"]
    weights = np.asarray(samples["weights"]) if samples["weights"] else np.zeros((0, len(names)))
    image = axes[1].imshow(weights, aspect="auto", cmap="viridis")
    axes[1].set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes[1].set_yticks(range(len(samples["prompts"])), samples["prompts"], fontsize=7)
    s2 = report["stage2"]
    axes[1].set_title(f"gating weights, held-out prompts (val acc {s2['val_accuracy']:.3f})")
    fig.colorbar(image, ax=axes[1], fraction=0.046)

    if report["debias"] is not None:
        d = report["debias"]
        lam = [d["lambdas"][n] for n in names]
        colors = ["tab:gray" if n == d["verbosity_objective"] else "tab:green" if d["reached_threshold"][n]
                  else "tab:red" for n in names]  # fmt: skip
        axes[2].barh(names, lam, color=colors)
        axes[2].set_title(f"debiasing λ vs {d['verbosity_objective']}\n(red: threshold not reached; gray: itself)")
    else:
        axes[2].text(0.5, 0.5, "no verbosity debiasing", ha="center", va="center")
        axes[2].set_title("debiasing λ")
    axes[2].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
