"""Run metrics: one JSON line per step in ``OUT/metrics.jsonl``, a progress bar, and per-objective curves.

On ``--resume`` the file is cut back to the checkpoint's step before the run goes on, so steps logged after
the last checkpoint (by a run that was killed) are redone and written once: step numbers stay contiguous
and no step appears twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """Appends step records to a JSONL file (rank 0 only) and keeps a tqdm bar in step with them."""

    def __init__(
        self, path: Path, *, total: int, start: int, enabled: bool, progress: bool, tensorboard: Path | None = None
    ) -> None:
        self.path = path
        self.enabled = enabled
        self.tensorboard = _tensorboard_writer(tensorboard) if enabled and tensorboard else None
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= start]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.bar = tqdm(total=total, initial=start, desc="train", disable=not (enabled and progress),
                        dynamic_ncols=True)  # fmt: skip

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as fh:
            fh.write(json.dumps(clean) + "\n")
        if self.tensorboard is not None:
            for key, value in clean.items():
                if isinstance(value, float) and key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])
        self.bar.update(1)
        shown = {k.split("/")[1]: f"{v:.3g}" for k, v in record.items() if k.startswith("rewards/") and
                 k.endswith("/mean") and isinstance(v, float)}  # fmt: skip
        self.bar.set_postfix(shown, refresh=False)

    def status(self, text: str | None) -> None:
        """Show (or clear, with None) a status such as a reward-service outage on the bar."""
        if self.enabled:
            self.bar.set_description("train" if text is None else f"train [{text}]")

    def close(self) -> None:
        self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(logdir: Path) -> Any:
    """TensorBoard through its own library, only when asked for and installed (never required)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        from service.training.config import ConfigError

        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(logdir))


def plot_metrics(metrics: Path, out_png: Path, *, title: str) -> Path:
    """Per-objective mean reward (and the combined reward) against step, one panel per objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)
    names = sorted({k.split("/")[1] for r in records for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    panels = names + ["reward"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
    for axis, name in zip(axes[0], panels, strict=True):
        key = "reward" if name == "reward" else f"rewards/{name}/mean"
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            axis.plot(*zip(*points, strict=True), marker=".")
        axis.set_title(name if name != "reward" else "combined reward", fontsize=9)
        axis.set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
