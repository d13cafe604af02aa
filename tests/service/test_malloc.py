"""`paretorm serve` keeps large buffers mapped between forwards (glibc `mallopt`), unless the operator set
the variable (issue 15: the command-line service ran with glibc's defaults; only the Docker image had
them)."""

from __future__ import annotations

import platform

import pytest

from service.malloc import SERVING_MALLOC_ENV, tune_malloc


class FakeLibc:
    """glibc's `mallopt` as `tune_malloc` sees it: records (param, value), answers 1 (accepted)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_every_setting_is_applied_with_glibcs_parameter_numbers() -> None:
    libc = FakeLibc()
    assert tune_malloc(env={}, libc=libc) == list(SERVING_MALLOC_ENV)
    assert sorted(libc.calls) == [(-3, 33554432), (-2, 268435456), (-1, 1073741824)]  # M_MMAP_THRESHOLD ...


def test_a_variable_the_operator_set_is_left_to_glibc() -> None:
    libc = FakeLibc()
    applied = tune_malloc(env={"MALLOC_TOP_PAD_": "0", "PATH": "/bin"}, libc=libc)
    assert applied == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
    assert -2 not in {param for param, _ in libc.calls}


def test_without_mallopt_nothing_is_applied() -> None:
    assert tune_malloc(env={}, libc=object()) == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_this_processs_glibc_accepts_the_settings() -> None:
    assert tune_malloc(env={}) == list(SERVING_MALLOC_ENV)
