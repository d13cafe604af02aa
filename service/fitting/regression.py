"""Stage 1 of ArmoRM: per-objective ridge regression heads on frozen last-token embeddings.

The recipe (armorm.md §3.1): for each objective, sklearn ``Ridge(alpha, fit_intercept=False)`` on the
rows where that objective is labelled; alphas ``1e-4 … 1e4``; one shuffled 80/20 split of all examples
(``random_state=42``); the alpha with the lowest validation MSE wins and its train-split fit becomes the
objective's row of ``regression_layer.weight`` (no bias, matching the served ``nn.Linear(bias=False)``).

Here the ridge is a closed-form solve. One eigendecomposition of the Gram matrix per labelled subset
(``XᵀX`` when there are more rows than features, ``XXᵀ`` otherwise) makes every alpha a diagonal rescale,
so the whole alpha grid costs one decomposition. Objectives labelled on exactly the same rows (the five
HelpSteer objectives, say) share that decomposition. Sums run in float64 over row chunks, so the
embeddings can stay in float32 (or bf16) in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from service.fitting.reference import REFERENCE_ALPHAS
from service.fitting.stats import pearson, train_val_split

_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class RidgeConfig:
    """Stage-1 settings; the defaults are the reference recipe's."""

    alphas: tuple[float, ...] = REFERENCE_ALPHAS
    val_fraction: float = 0.2
    seed: int = 42
    refit_on_all: bool = False
    """The recipe keeps the train-split fit; set True to refit on train+validation with the chosen alpha."""

    def __post_init__(self) -> None:
        if not self.alphas or any(not (a > 0 and math.isfinite(a)) for a in self.alphas):
            raise ValueError(f"ridge alphas must be finite and > 0, got {self.alphas}; e.g. 1e-4 … 1e4")


@dataclass(frozen=True)
class ObjectiveFit:
    """What stage 1 learned about one objective, for the report."""

    name: str
    alpha: float
    val_mse: float
    val_pearson: float
    n_train: int
    n_val: int
    mse_by_alpha: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RegressionResult:
    weight: torch.Tensor
    """(K, H) float32: the rows of ``regression_layer.weight``, in objective order."""
    objectives: list[ObjectiveFit]


def _gram(x: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, bool]:
    """Float64 Gram matrix of the selected rows; returns (G, primal) with primal meaning G = XᵀX."""
    n, h = rows.size, x.shape[1]
    if n > h:
        g = torch.zeros(h, h, dtype=torch.float64)
        for start in range(0, n, _CHUNK_ROWS):
            chunk = x[torch.from_numpy(rows[start : start + _CHUNK_ROWS])].double()
            g += chunk.T @ chunk
        return g, True
    xs = x[torch.from_numpy(rows)].double()
    return xs @ xs.T, False


def _xt_y(x: torch.Tensor, rows: np.ndarray, y: torch.Tensor) -> torch.Tensor:
    """Xᵀ Y for the selected rows, Y of shape (n, m), accumulated in float64 -> (H, m)."""
    out = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
    for start in range(0, rows.size, _CHUNK_ROWS):
        chunk = x[torch.from_numpy(rows[start : start + _CHUNK_ROWS])].double()
        out += chunk.T @ y[start : start + _CHUNK_ROWS]
    return out


def ridge_path(x: torch.Tensor, rows: np.ndarray, y: torch.Tensor, alphas: Sequence[float]) -> torch.Tensor:
    """Ridge solutions without intercept for every alpha and every target column.

    Solves ``min_w ||X w - y||² + alpha ||w||²`` (sklearn's Ridge objective) on ``x[rows]``.
    ``y`` is (n, m) float64 aligned with ``rows``; returns (len(alphas), m, H) float64.
    """
    g, primal = _gram(x, rows)
    evals, vecs = torch.linalg.eigh(g)
    evals = evals.clamp_min(0.0)  # round-off can push the zero eigenvalues of a PSD matrix below 0
    out = []
    if primal:  # w = V diag(1/(e+a)) Vᵀ Xᵀy
        proj = vecs.T @ _xt_y(x, rows, y)  # (H, m)
        for alpha in alphas:
            out.append((vecs @ (proj / (evals + alpha)[:, None])).T)
    else:  # dual form: w = Xᵀ U diag(1/(e+a)) Uᵀ y
        proj = vecs.T @ y  # (n, m)
        for alpha in alphas:
            out.append(_xt_y(x, rows, vecs @ (proj / (evals + alpha)[:, None])).T)
    return torch.stack(out)


def fit_regression_heads(
    embeddings: torch.Tensor,
    labels: np.ndarray,
    names: Sequence[str],
    config: RidgeConfig | None = None,
) -> RegressionResult:
    """Fit one ridge head per objective; NaN labels are masked out of that objective's fit.

    ``embeddings`` (N, H) are last-token states; ``labels`` (N, K) with NaN for "not rated".
    Raises ValueError when an objective has too few labels on either side of the split.
    """
    cfg = config or RidgeConfig()
    n, h = embeddings.shape
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != (n, len(names)):
        raise ValueError(f"labels have shape {labels.shape}, expected ({n}, {len(names)}) for {len(names)} names")
    train_idx, val_idx = train_val_split(n, cfg.val_fraction, cfg.seed)
    x = embeddings.detach().cpu()
    if not x.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {x.dtype}")
    weight = torch.zeros(len(names), h, dtype=torch.float64)
    fits: list[ObjectiveFit | None] = [None] * len(names)

    # Group objectives by their labelled training rows so each Gram matrix is decomposed once.
    groups: dict[bytes, list[int]] = {}
    for k in range(len(names)):
        groups.setdefault(np.isfinite(labels[train_idx, k]).tobytes(), []).append(k)
    for ks in groups.values():
        tr_rows = train_idx[np.isfinite(labels[train_idx, ks[0]])]
        for k in ks:
            va_rows = val_idx[np.isfinite(labels[val_idx, k])]
            if tr_rows.size < 2 or va_rows.size < 2:
                raise ValueError(
                    f"objective {names[k]!r} has {tr_rows.size} labelled training and {va_rows.size} labelled "
                    f"validation examples (split seed {cfg.seed}); ridge selection needs at least 2 of each: "
                    "add ratings for it or drop it from the objectives"
                )
        y_tr = torch.from_numpy(labels[np.ix_(tr_rows, ks)])
        path = ridge_path(x, tr_rows, y_tr, cfg.alphas)  # (A, len(ks), H)
        for j, k in enumerate(ks):
            fits[k], weight[k] = _select_alpha(x, labels[:, k], val_idx, path[:, j], names[k], cfg, tr_rows.size)
    if cfg.refit_on_all:
        for k, fit in enumerate(fits):
            assert fit is not None
            rows = np.nonzero(np.isfinite(labels[:, k]))[0]
            weight[k] = ridge_path(x, rows, torch.from_numpy(labels[rows, k : k + 1]), [fit.alpha])[0, 0]
    return RegressionResult(weight=weight.float(), objectives=[f for f in fits if f is not None])


def _select_alpha(
    x: torch.Tensor,
    y: np.ndarray,
    val_idx: np.ndarray,
    path: torch.Tensor,
    name: str,
    cfg: RidgeConfig,
    n_train: int,
) -> tuple[ObjectiveFit, torch.Tensor]:
    """Pick the alpha with the lowest validation MSE (first one on ties, like pandas' idxmin)."""
    rows = val_idx[np.isfinite(y[val_idx])]
    xv = x[torch.from_numpy(rows)].double()
    preds = (xv @ path.T).numpy()  # (n_val, A)
    mses = ((preds - y[rows][:, None]) ** 2).mean(axis=0)
    best = int(np.argmin(mses))
    fit = ObjectiveFit(
        name=name,
        alpha=float(cfg.alphas[best]),
        val_mse=float(mses[best]),
        val_pearson=pearson(preds[:, best], y[rows]),
        n_train=n_train,
        n_val=int(rows.size),
        mse_by_alpha={float(a): float(m) for a, m in zip(cfg.alphas, mses, strict=True)},
    )
    return fit, path[best]
