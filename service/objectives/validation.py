"""Turn JSON-shaped numeric input into float64 arrays, or say exactly which element is wrong.

Every objectives endpoint receives nested lists from JSON. numpy can convert them in one call, but its
errors ("inhomogeneous shape after 1 dimensions") do not tell a trainer author *which* row is short or
*which* advantage is NaN. `validate_nested` keeps the fast numpy path for good input and only walks the
nested structure when something is wrong, so error messages name the offending index path
(``advantages[3][1] is NaN``) and the service can return them verbatim as 422s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np

__all__ = ["ObjectiveInputError", "validate_nested", "index_path"]


class ObjectiveInputError(ValueError):
    """Input to an objectives function is malformed; the message names the field and index and the fix.

    Subclasses `ValueError` so plain Python callers can catch it generically; the service maps it to 422.
    """


def index_path(name: str, index: Sequence[int]) -> str:
    """Render ``name[i][j]`` for an index tuple, the form every message in this package uses."""
    return name + "".join(f"[{int(i)}]" for i in index)


def validate_nested(value: Any, name: str = "advantages", *, min_ndim: int = 1) -> np.ndarray:
    """Convert a nested list (or array) of finite real numbers into a float64 array.

    Args:
        value: nested lists/tuples of numbers, or a numeric ndarray.
        name: field name used in error messages.
        min_ndim: the fewest axes the result may have (1 for ``[..., n]`` objective arrays).

    Raises:
        ObjectiveInputError: ragged nesting, a non-number (strings, None, and all-boolean input: JSON
            ``"1"`` or ``true`` is almost always a client bug), NaN/inf, too few axes, or an empty last
            axis. Booleans *mixed* with numbers are read as 0/1, as numpy does, to keep the fast path.
    """
    array = _fast_convert(value)
    if array is None:
        _raise_structure_error(value, name)
        raise AssertionError("unreachable: _raise_structure_error always raises")  # pragma: no cover
    if array.ndim < min_ndim:
        raise ObjectiveInputError(
            f"{name} must be a list nested at least {min_ndim} deep (got a {array.ndim}-d value); "
            f"put the objectives in the last axis, e.g. [[0.1, -0.2, 0.3]]"
        )
    if min_ndim >= 1 and array.shape[-1] == 0:
        raise ObjectiveInputError(f"{name} has an empty last axis; give at least one value per row")
    finite = np.isfinite(array)
    if not finite.all():
        bad = tuple(np.argwhere(~finite)[0])
        what = "NaN" if math.isnan(array[bad]) else "infinite"
        raise ObjectiveInputError(f"{index_path(name, bad)} is {what}; every value must be a finite number")
    return array


def _fast_convert(value: Any) -> np.ndarray | None:
    """The numpy path for well-formed input; None when the slow, explaining walk is needed."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return None
    if array.dtype.kind not in "iuf":
        return None
    return array.astype(np.float64, copy=False)


def _raise_structure_error(value: Any, name: str) -> None:
    """Walk the nesting depth-first and raise on the first ragged, non-numeric or non-finite element."""
    shape = _expected_shape(value)
    _walk(value, name, (), shape)
    # The walk found nothing wrong although numpy refused the value (e.g. an exotic sequence type).
    raise ObjectiveInputError(f"{name} could not be read as a nested list of numbers")


def _expected_shape(value: Any) -> tuple[int, ...]:
    """Shape implied by following the first element at each depth (what numpy would also assume)."""
    shape: list[int] = []
    while _is_sequence(value):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _walk(value: Any, name: str, index: tuple[int, ...], shape: tuple[int, ...]) -> None:
    depth = len(index)
    where = index_path(name, index)
    if depth < len(shape):
        if not _is_sequence(value):
            raise ObjectiveInputError(
                f"{where} is a {type(value).__name__} but {name} elements at this depth are lists of "
                f"length {shape[depth]} (ragged nesting); make every row the same shape"
            )
        if len(value) != shape[depth]:
            raise ObjectiveInputError(
                f"{where} has length {len(value)}, expected {shape[depth]} (ragged); "
                f"make every row the same length"
            )
        for i, item in enumerate(value):
            _walk(item, name, (*index, i), shape)
        return
    if _is_sequence(value):
        raise ObjectiveInputError(
            f"{where} is a list but {name} elements at this depth are numbers (ragged nesting); "
            f"make every row the same shape"
        )
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real | np.number):
        raise ObjectiveInputError(f"{where} is a {type(value).__name__} ({value!r:.40}); expected a number")
    if not math.isfinite(float(value)):
        what = "NaN" if math.isnan(float(value)) else "infinite"
        raise ObjectiveInputError(f"{where} is {what}; every value must be a finite number")


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)
