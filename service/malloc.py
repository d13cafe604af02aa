"""The glibc malloc settings `paretorm serve` runs with (and `paretorm bench` its in-process rows).

PyTorch's CPU allocator takes every tensor from malloc and hands it back at once. With glibc's default
thresholds the large activation buffers go back to the OS after every forward, and the next forward
page-faults them in again: 0.6-0.9 M page faults per pass cost 15-30 % on CPU (environment.md §8). These
keep large buffers mapped between passes. The Docker image sets them as environment variables (glibc
reads those at start); `paretorm serve` applies the same values to itself with `mallopt` before the model
loads, so a service started from the command line gets them too. A variable the operator set wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping
from typing import Any

SERVING_MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",  # glibc's maximum on 64-bit: 32 MB
    "MALLOC_TRIM_THRESHOLD_": "1073741824",
    "MALLOC_TOP_PAD_": "268435456",
}
_MALLOPT_PARAMS = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}
"""mallopt parameter numbers from glibc's malloc.h (M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD)."""


def glibc() -> Any | None:
    """This process's C library through ctypes, or None where there is none to load."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_malloc(env: Mapping[str, str] | None = None, libc: Any | None = None) -> list[str]:
    """Apply `SERVING_MALLOC_ENV` to this process with `mallopt`, each variable only where `env` (the
    process environment by default) does not set it. Returns the variables applied; [] without glibc."""
    env = os.environ if env is None else env
    libc = glibc() if libc is None else libc
    if libc is None or not hasattr(libc, "mallopt"):
        return []
    applied = []
    for variable, value in SERVING_MALLOC_ENV.items():
        if variable not in env and libc.mallopt(_MALLOPT_PARAMS[variable], int(value)) == 1:
            applied.append(variable)
    return applied
