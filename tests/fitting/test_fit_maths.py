"""Stage 1 and debiasing on planted data: the closed forms recover what was planted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.fitting.debias import DebiasConfig, find_verbosity_penalties, transform_matrix
from service.fitting.regression import RidgeConfig, fit_regression_heads, ridge_path
from service.fitting.stats import pearson, rankdata, spearman, train_val_split


def test_rankdata_averages_ties_and_spearman_is_rank_pearson() -> None:
    assert rankdata(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, x**3) < 0.99
    assert np.isnan(pearson(x, np.ones(5)))


def test_split_is_deterministic_disjoint_and_covers_everything() -> None:
    tr, va = train_val_split(101, 0.2, 42)
    assert len(va) == 21 and len(tr) == 80  # ceil(0.2 * 101) held out, as sklearn does
    assert sorted(np.r_[tr, va].tolist()) == list(range(101))
    assert np.array_equal(train_val_split(101, 0.2, 42)[1], va)


@pytest.mark.parametrize("n", [200, 12])  # primal (n > H) and dual (n <= H) closed forms
def test_ridge_path_matches_the_normal_equations(n: int) -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(n, 16)).astype(np.float32))
    y = rng.normal(size=(n, 2))
    rows = np.arange(n)
    path = ridge_path(x, rows, torch.from_numpy(y), [0.1, 10.0])
    xd = x.double().numpy()
    for a, alpha in enumerate([0.1, 10.0]):
        expected = np.linalg.solve(xd.T @ xd + alpha * np.eye(16), xd.T @ y)  # (H, 2)
        np.testing.assert_allclose(path[a].numpy().T, expected, rtol=1e-6, atol=1e-8)


def test_stage1_recovers_planted_heads_with_missing_labels() -> None:
    rng = np.random.default_rng(1)
    n, h, k = 800, 24, 3
    w_true = rng.normal(size=(k, h))
    z = rng.normal(size=(n, h))
    labels = z @ w_true.T + 0.05 * rng.normal(size=(n, k))
    labels[rng.random((n, k)) < 0.25] = np.nan  # merged datasets: a quarter of each objective unrated
    labels[:300, 2] = np.nan  # and one objective labelled on a different subset
    fit = fit_regression_heads(torch.from_numpy(z).float(), labels, ["a", "b", "c"])
    for i, obj in enumerate(fit.objectives):
        cos = float(fit.weight[i].double() @ torch.from_numpy(w_true[i])) / (
            float(fit.weight[i].double().norm()) * np.linalg.norm(w_true[i])
        )
        assert cos > 0.999, obj
        assert obj.val_pearson > 0.99
        assert obj.n_train + obj.n_val == int(np.isfinite(labels[:, i]).sum())
        assert obj.alpha in RidgeConfig().alphas and obj.val_mse == min(obj.mse_by_alpha.values())
    assert fit.weight.shape == (k, h) and fit.weight.dtype == torch.float32


def test_stage1_refuses_an_objective_without_enough_labels() -> None:
    z = torch.randn(50, 4)
    labels = np.full((50, 2), np.nan)
    labels[:, 0] = 1.0
    labels[0, 1] = 1.0
    with pytest.raises(ValueError, match="objective 'thin'.*add ratings for it or drop it"):
        fit_regression_heads(z, labels, ["full", "thin"])


def test_debiasing_picks_the_smallest_lambda_under_the_threshold() -> None:
    rng = np.random.default_rng(2)
    m = 4000
    verbose = rng.normal(size=m)
    slopes = [0.0, 0.3, 0.6, None, 3.0]  # index 3 is the verbosity objective; 3.0 never gets there
    cols = [verbose if s is None else s * verbose + rng.normal(size=m) for s in slopes]
    rewards = np.stack(cols, axis=1)
    cfg = DebiasConfig(verbosity_index=3)
    res = find_verbosity_penalties(rewards, cfg)

    adjusted = rewards @ res.transform.double().numpy()
    for i in (0, 1, 2):
        assert res.reached[i]
        assert spearman(adjusted[:, i], verbose) <= cfg.threshold  # the measured correlation is now under it
        assert res.corr_after[i] == pytest.approx(spearman(adjusted[:, i], verbose))
        smaller = [g for g in cfg.grid if g < res.lambdas[i]]
        if smaller:  # the chosen λ is the first that works
            assert spearman(rewards[:, i] - smaller[-1] * verbose, verbose) > cfg.threshold
    assert res.lambdas[0] == 0.0
    assert 0.2 < res.lambdas[1] < res.lambdas[2] < 0.95
    assert not res.reached[4] and res.lambdas[4] == 1.0  # the reference's fallback, flagged
    assert res.corr_before[4] > 0.9
    np.testing.assert_allclose(adjusted[:, 3], 0.0, atol=1e-12)  # verbosity itself contributes nothing


def test_transform_matrix_subtracts_lambda_times_verbosity() -> None:
    t = transform_matrix([0.5, 0.25, 1.0], verbosity_index=2)
    r = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.allclose(r @ t, torch.tensor([[1.0 - 0.5 * 4.0, 2.0 - 0.25 * 4.0, 0.0]]))
