"""What a JSON value on paretorm's wire may hold, checked once for every body, whatever its schema.

JSON itself admits values that the service cannot use: a `"\\ud800"` escape decodes to a lone UTF-16
surrogate that no tokenizer, UTF-8 encoder or JSON serializer accepts; an integer of 400 digits is valid
JSON but overflows a float; Python's `json` reads `NaN`, `Infinity` and `1e400` as non-finite floats. Each
of these used to pass the pydantic models (which say `str` and `Any`) and fail deep inside the tokenizer
or the maths as a 500. `first_invalid_value` walks a decoded body once and names the first such value by
its path (`items[2].response`), so the service can answer 422 for every route and the client can refuse
to send it. Standard library only: the client imports it without torch.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "first_invalid_value"]

MAX_JSON_DEPTH = 64
"""Deepest nesting any paretorm body needs is about 6 (PAMA's `[..., n]` arrays); 64 leaves room."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_INT_MAX = int(sys.float_info.max)


def first_invalid_value(value: Any, path: str = "") -> str | None:
    """A value the service cannot take, as `"path: what is wrong; how to fix it"`, or None if none is.

    Checks every string (dictionary keys included) for lone surrogates, every number for being a finite
    value that fits a 64-bit float, and the nesting for staying under `MAX_JSON_DEPTH`. Iterative, so a
    deep body cannot exhaust the interpreter's stack, and built for speed on the event loop: scalars are
    checked in one tight loop per container and a path is only spelled out for the value reported
    (3 million numbers: 0.3 s). Several bad values: the one reported is the first found, not always the
    first in document order.
    """
    if not isinstance(value, dict | list | tuple):
        return _scalar_problem(value, path or "body")
    root = _Frame(value, None, path, 0)
    stack = [root]
    while stack:
        frame = stack.pop()
        container = frame.value
        if frame.depth >= MAX_JSON_DEPTH:
            return _too_deep(frame.path())
        is_dict = isinstance(container, dict)
        for key, child in container.items() if is_dict else enumerate(container):
            if is_dict and not (type(key) is str and key.isascii()):  # noqa: E721 - exact type, for speed
                problem = _text_problem(str(key), f"{frame.path() or 'body'} key")
                if problem is not None:
                    return problem
            kind = type(child)
            if kind is float:
                if child - child == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
                    continue
            elif kind is str:
                if child.isascii() or _SURROGATE.search(child) is None:
                    continue
            elif kind is int:
                if -_INT_MAX <= child <= _INT_MAX:
                    continue
            elif kind is list or kind is dict or kind is tuple:
                stack.append(_Frame(child, frame, key, frame.depth + 1))
                continue
            elif child is None or kind is bool:
                continue
            problem = _scalar_problem(child, _Frame(child, frame, key, 0).path() or "body")
            if problem is not None:
                return problem
    return None


class _Frame:
    """A container on the walk's stack; its path is only spelled out when something in it is reported."""

    __slots__ = ("depth", "key", "parent", "value")

    def __init__(self, value: Any, parent: _Frame | None, key: Any, depth: int) -> None:
        self.value, self.parent, self.key, self.depth = value, parent, key, depth

    def path(self) -> str:
        if self.parent is None:
            return str(self.key)
        where = self.parent.path()
        if not isinstance(self.parent.value, dict):
            return f"{where}[{self.key}]"
        return f"{where}.{self.key}" if where else str(self.key)


def _scalar_problem(item: Any, where: str) -> str | None:
    if isinstance(item, str):
        return _text_problem(item, where)
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int):
        try:
            float(item)
        except OverflowError:
            return (f"{where}: the integer ({len(str(abs(item)))} digits) is too large for a 64-bit float; "
                    "send numbers between -1.8e308 and 1.8e308")
        return None
    if isinstance(item, float) and not math.isfinite(item):
        what = "NaN" if math.isnan(item) else "infinite (NaN, Infinity or a literal beyond 1.8e308)"
        return (f"{where}: the number is {what}; every number must be finite "
                "(strict JSON has no NaN or Infinity)")
    return None


def _text_problem(text: str, where: str) -> str | None:
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (f"{where}: the text holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x} at character "
            f"{found.start()}), which is not a Unicode character (no tokenizer or UTF-8 encoder takes it); "
            "send valid Unicode "
            "(a character outside the BMP is one surrogate pair, high then low, or plain UTF-8)")


def _too_deep(where: str) -> str:
    return (f"{where or 'body'}: JSON nested more than {MAX_JSON_DEPTH} levels deep; no paretorm request "
            "needs that, flatten the value")
