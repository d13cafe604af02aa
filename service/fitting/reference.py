"""The ArmoRM reference recipe's search grids (armorm.md), torch-free: ``paretorm fit --help`` is instant."""

REFERENCE_ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4)
"""Stage 1: the ridge penalties each head's validation search tries."""
REFERENCE_LAMBDA_GRID: tuple[float, ...] = (
    0.0, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4,
    0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
)  # fmt: skip
"""Debiasing: the verbosity penalties searched per objective."""
REFERENCE_CORR_THRESHOLD = 0.03
"""Debiasing: the target correlation with verbosity on the reference pairs."""
