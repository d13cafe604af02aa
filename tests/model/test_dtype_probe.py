"""`--dtype auto` takes bfloat16 only where it measures faster; a slow explicit bfloat16 gets a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from service.model.dtype_probe import (
    BF16_MIN_SPEEDUP,
    Measure,
    bfloat16_speedup,
    linear_seconds,
    resolve_dtype,
)
from service.runtime import load_runtime
from service.settings import ServiceSettings


def fake_measure(float32_s: float, bfloat16_s: float, calls: list[torch.dtype] | None = None) -> Measure:
    """A linear layer that takes the given seconds per dtype; records which dtypes were measured."""
    def measure(device: torch.device, dtype: torch.dtype) -> float:
        assert device.type == "cpu"
        if calls is not None:
            calls.append(dtype)
        return {torch.float32: float32_s, torch.bfloat16: bfloat16_s}[dtype]

    return measure


@pytest.mark.parametrize(
    ("float32_s", "bfloat16_s", "chosen"),
    [
        (4.0, 1.0, "bfloat16"),  # AVX512-BF16 / AMX: ~4x
        (1.0, 8.0, "float32"),  # AVX2 only: bfloat16 many times slower
        (1.1, 1.0, "float32"),  # a little faster is not worth the exactness
        (BF16_MIN_SPEEDUP, 1.0, "bfloat16"),
    ],
)
def test_auto_takes_bfloat16_only_where_it_is_clearly_faster(float32_s: float, bfloat16_s: float,
                                                              chosen: str) -> None:
    assert resolve_dtype("auto", "cpu", fake_measure(float32_s, bfloat16_s)) == chosen


def test_the_speedup_alternates_the_dtypes_and_keeps_each_best() -> None:
    times = iter([2.0, 1.0, 1.0, 3.0])  # float32, bfloat16, float32, bfloat16: a slow spell hit each once
    calls: list[torch.dtype] = []

    def measure(device: torch.device, dtype: torch.dtype) -> float:
        calls.append(dtype)
        return next(times)

    assert bfloat16_speedup(torch.device("cpu"), measure) == 1.0
    assert calls == [torch.float32, torch.bfloat16] * 2


def test_an_explicit_slow_bfloat16_is_kept_with_a_warning_that_says_what_to_start_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.model.dtype_probe"):
        assert resolve_dtype("bfloat16", "cpu", fake_measure(1.0, 8.0)) == "bfloat16"
    assert "8.0x slower than float32" in caplog.text
    assert "--dtype float32 or --dtype auto" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.model.dtype_probe"):
        assert resolve_dtype("bfloat16", "cpu", fake_measure(3.0, 1.0)) == "bfloat16"
    assert caplog.text == ""


@pytest.mark.parametrize(("requested", "device"), [("float32", "cpu"), ("float16", "cpu"), ("auto", "meta")])
def test_nothing_is_measured_where_nothing_is_to_choose(requested: str, device: str) -> None:
    calls: list[torch.dtype] = []
    resolved = resolve_dtype(requested, device, fake_measure(1.0, 1.0, calls))
    assert resolved == ("float32" if requested == "auto" else requested)
    assert calls == []


def test_the_real_measurement_times_both_dtypes_here() -> None:
    assert 0 < linear_seconds(torch.device("cpu"), torch.float32) < 5
    assert 0 < linear_seconds(torch.device("cpu"), torch.bfloat16) < 5
    assert resolve_dtype("auto", "cpu") in ("bfloat16", "float32")


def test_a_service_started_with_auto_loads_and_reports_the_dtype_it_chose(tiny_armorm_dir: Path) -> None:
    runtime = load_runtime(ServiceSettings(model=tiny_armorm_dir, dtype="auto"))
    chosen = runtime.settings.dtype
    assert chosen in ("bfloat16", "float32")
    assert runtime.card.dtype == chosen
