"""Pure maths for combining objectives: PAMA weights, DPA directions, CGPO judges and calibration, MAPL data.

No torch and no HTTP: the service's routes and the trainers both call these functions, so they must be
importable (and testable) with numpy alone. Errors derive from `ObjectiveInputError` (a `ValueError`)
and carry messages meant to be returned to the caller verbatim as 422s.
"""

from service.objectives.cgpo import BaselinePlan, calibrated_reward, plan_baselines
from service.objectives.directions import (
    Direction,
    DirectionError,
    direction_from_angle,
    render_dpa_system_prompt,
    weights_vector,
)
from service.objectives.pama import PamaResult, pama_combine
from service.objectives.validation import ObjectiveInputError, validate_nested

__all__ = [
    "BaselinePlan",
    "Direction",
    "DirectionError",
    "ObjectiveInputError",
    "PamaResult",
    "calibrated_reward",
    "direction_from_angle",
    "pama_combine",
    "plan_baselines",
    "render_dpa_system_prompt",
    "validate_nested",
    "weights_vector",
]
