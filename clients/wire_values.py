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
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "first_invalid_value"]

MAX_JSON_DEPTH = 64
"""Deepest nesting any paretorm body needs is about 6 (PAMA's `[..., n]` arrays); 64 leaves room."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def first_invalid_value(value: Any, path: str = "") -> str | None:
    """The first value the service cannot take, as `"path: what is wrong; how to fix it"`, or None.

    Checks every string (dictionary keys included) for lone surrogates, every number for being a finite
    value that fits a 64-bit float, and the nesting for staying under `MAX_JSON_DEPTH`. Iterative, so a
    deep body cannot exhaust the interpreter's stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_JSON_DEPTH:
                return _too_deep(where)
            for key, child in reversed(list(item.items())):
                child_path = f"{where}.{key}" if where else str(key)
                problem = _text_problem(str(key), f"{where or 'body'} key")
                if problem is not None:
                    return problem
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= MAX_JSON_DEPTH:
                return _too_deep(where)
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in reversed(list(enumerate(item))))
        else:
            problem = _scalar_problem(item, where or "body")
            if problem is not None:
                return problem
    return None


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
