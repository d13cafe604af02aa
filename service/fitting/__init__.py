"""Fitting ArmoRM-style reward models (``paretorm fit``): embeddings, ridge heads, debiasing, gating.

Stage modules work on tensors only (``regression``, ``debias``, ``gating_fit``); ``data``, ``encoding`` and
``embed`` turn JSONL files and a backbone into those tensors; ``package`` and ``report`` write the results;
``pipeline`` runs it all and ``cli`` exposes it.
"""

from service.fitting.data import DataError, read_intra_pairs, read_preferences, read_ratings
from service.fitting.debias import DebiasConfig, DebiasResult, find_verbosity_penalties, transform_matrix
from service.fitting.gating_fit import GatingFitConfig, GatingFitResult, PreferencePairs, build_pairs, fit_gating
from service.fitting.regression import RegressionResult, RidgeConfig, fit_regression_heads

__all__ = [
    "DataError",
    "DebiasConfig",
    "DebiasResult",
    "GatingFitConfig",
    "GatingFitResult",
    "PreferencePairs",
    "RegressionResult",
    "RidgeConfig",
    "build_pairs",
    "find_verbosity_penalties",
    "fit_gating",
    "fit_regression_heads",
    "read_intra_pairs",
    "read_preferences",
    "read_ratings",
    "transform_matrix",
]
