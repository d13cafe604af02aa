"""DPA preference directions and fixed weight vectors over a model's named objectives.

DPA (Wang et al., arXiv 2402.18571) conditions a policy on a unit vector ``v`` over reward objectives
and scores responses with ``v^T r(x, y)``. The service needs ``v`` to score (``direction`` in
``/v1/score``); the trainer needs the *same* ``v`` rendered into the system prompt it samples with.
Both import this module so the two can never disagree on normalisation or rounding.

Decisions:
- A `Direction` always lives in the model's full objective space (zeros outside the user's subset), so
  ``project`` is one dot product whatever subset the user named.
- Directions are normalised to unit L2 norm (DPA's ``v ∈ S^{k-1}``); fixed `weights_vector` are *not*
  normalised — multi-objective GRPO and MODPO weights mean what the caller wrote.
- Rounding in the system prompt is Python's ``round`` (half to even), which equals the README's
  ``np.round`` for floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.objectives.validation import ObjectiveInputError, validate_nested

__all__ = [
    "DPA_SYSTEM_PROMPT_PREFIX",
    "Direction",
    "DirectionError",
    "direction_from_angle",
    "render_dpa_system_prompt",
    "weights_vector",
]

DPA_SYSTEM_PROMPT_PREFIX = (
    "You are a helpful, respectful, and honest assistant who always responds to the user in a harmless way. "
    "Your response should maximize weighted rating = "
)
"""The fixed part of DPA's system prompt (RLHFlow/Directional-Preference-Alignment README)."""


class DirectionError(ObjectiveInputError):
    """A direction or weight vector is unusable; the message says why and lists valid objective names."""


@dataclass(frozen=True, slots=True)
class Direction:
    """A unit vector over a model's objectives, in the order of ``names``.

    Build one with `Direction.parse` (list or ``{name: component}`` dict) or `direction_from_angle`.
    """

    names: tuple[str, ...]
    components: tuple[float, ...]

    @classmethod
    def parse(cls, spec: Sequence[float] | Mapping[str, float], names: Sequence[str]) -> Direction:
        """Normalise a list aligned with ``names``, or a dict over any subset of ``names``.

        Raises:
            DirectionError: wrong length, unknown name (the message lists the valid ones), NaN/inf, or
                the zero vector (it has no direction).
        """
        raw = _raw_vector(spec, names, field="direction")
        largest = float(np.abs(raw).max())
        if largest == 0.0:
            raise DirectionError(
                "direction is the zero vector, which has no direction; give at least one non-zero component"
            )
        raw = raw / largest  # scale first so squaring huge components cannot overflow
        norm = float(np.linalg.norm(raw))
        return cls(names=tuple(names), components=tuple(float(x) for x in raw / norm))

    @property
    def vector(self) -> np.ndarray:
        """The components as a float64 array of shape ``[n]``."""
        return np.asarray(self.components, dtype=np.float64)

    def as_dict(self, *, include_zero: bool = False) -> dict[str, float]:
        """``{name: component}``, by default only for the objectives the direction uses."""
        return {n: c for n, c in zip(self.names, self.components, strict=True) if include_zero or c != 0.0}

    def project(self, rewards: np.ndarray) -> np.ndarray:
        """``v^T r`` for rewards of shape ``[..., n]`` → ``[...]`` (DPA's preference-conditioned reward)."""
        r = np.asarray(rewards, dtype=np.float64)
        if r.shape[-1:] != (len(self.names),):
            raise DirectionError(
                f"rewards have {r.shape[-1] if r.ndim else 0} objectives in the last axis, "
                f"the direction has {len(self.names)}"
            )
        return r @ self.vector


def direction_from_angle(
    theta: float,
    names: tuple[str, str] = ("helpfulness", "verbosity"),
    *,
    degrees: bool = False,
    objective_names: Sequence[str] | None = None,
) -> Direction:
    """DPA's two-objective direction ``v = (cos θ, sin θ)`` over ``names``.

    Args:
        theta: the angle (radians unless ``degrees``). DPA's README recommends ``|θ| ≤ 45°``.
        names: the two objectives, first gets ``cos θ``, second ``sin θ``.
        objective_names: the model's full objective list; when given, the direction lives in that space
            with zeros elsewhere (what ``/v1/score`` needs). Defaults to ``names`` alone.
    """
    if isinstance(theta, bool) or not isinstance(theta, int | float) or not math.isfinite(theta):
        raise DirectionError(f"theta must be a finite number (got {theta!r})")
    if len(names) != 2 or names[0] == names[1]:
        raise DirectionError(f"the angle form needs two distinct objective names (got {list(names)!r})")
    radians = math.radians(theta) if degrees else float(theta)
    spec = {names[0]: math.cos(radians), names[1]: math.sin(radians)}
    return Direction.parse(spec, tuple(objective_names) if objective_names is not None else names)


def weights_vector(weights: Sequence[float] | Mapping[str, float], names: Sequence[str]) -> np.ndarray:
    """Fixed aggregation weights over ``names`` (list aligned with them, or dict over a subset), as given.

    Unlike a `Direction` nothing is normalised: ``Σ_k w_k r_k`` keeps the caller's scale. Negative
    weights are allowed (a penalty); the all-zero vector is rejected because it scores everything 0.
    """
    raw = _raw_vector(weights, names, field="weights")
    if not raw.any():
        raise DirectionError("weights are all zero, which scores every response 0; give a non-zero weight")
    return raw


def render_dpa_system_prompt(
    direction: Direction,
    labels: Mapping[str, str] | None = None,
    *,
    include_zero: bool = False,
) -> str:
    """DPA's system prompt for ``direction``: ``... weighted rating = helpfulness*80 + verbosity*60``.

    Each term is ``{label}*{round(100 * v_i)}`` in the direction's objective order. For the paper's two
    objectives ``v = (cos θ, sin θ)`` this is exactly the README's ``weight_h = round(100 cos θ)``,
    ``weight_v = round(100 sin θ)`` text. For ``k > 2`` objectives the same term is repeated and joined
    with `` + `` — [our reading]: DPA only trained and documented the two-objective prompt.

    Args:
        direction: the unit vector to render.
        labels: display names per objective (e.g. ``{"helpsteer-helpfulness": "helpfulness"}``);
            objectives without a label are rendered by name.
        include_zero: also render objectives whose component is 0 (off by default: a 19-objective model
            with a 2-objective direction renders two terms, as DPA does).
    """
    labels = labels or {}
    unknown = sorted(set(labels) - set(direction.names))
    if unknown:
        raise DirectionError(
            f"labels name unknown objectives {unknown}; valid names: {list(direction.names)}"
        )
    terms = [
        f"{labels.get(name, name)}*{round(100 * component)}"
        for name, component in zip(direction.names, direction.components, strict=True)
        if include_zero or component != 0.0
    ]
    return DPA_SYSTEM_PROMPT_PREFIX + " + ".join(terms)


def _raw_vector(spec: Any, names: Sequence[str], *, field: str) -> np.ndarray:
    """Validate a list-or-dict vector against ``names`` and return it unnormalised, shape ``[n]``."""
    if not names:
        raise DirectionError(f"the model has no objectives, so a {field} cannot be built")
    if isinstance(spec, Mapping):
        if not spec:
            raise DirectionError(f"{field} is an empty dict; name at least one of {list(names)}")
        unknown = [key for key in spec if key not in names]
        if unknown:
            raise DirectionError(f"{field} names unknown objective(s) {unknown}; valid names: {list(names)}")
        raw = np.zeros(len(names), dtype=np.float64)
        position = {name: i for i, name in enumerate(names)}
        for key, value in spec.items():
            raw[position[key]] = _finite(value, f"{field}[{key!r}]")
        return raw
    try:
        raw = validate_nested(spec, field, min_ndim=1)
    except ObjectiveInputError as error:
        raise DirectionError(str(error)) from None
    if raw.ndim != 1 or raw.shape[0] != len(names):
        raise DirectionError(
            f"{field} has shape {list(raw.shape)}, expected a flat list of {len(names)} numbers aligned with "
            f"{list(names)}; or pass a dict {{name: value}} over a subset"
        )
    return raw


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise DirectionError(f"{where} is a {type(value).__name__} ({value!r:.40}); expected a number")
    if not math.isfinite(float(value)):
        raise DirectionError(f"{where} is {value}; every component must be a finite number")
    return float(value)
