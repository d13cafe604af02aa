"""`attention_kernel`: a pinned kernel is the one that runs (same scores as the probe's), one that cannot run
here stops the start-up with the kernels that can, and `auto` leaves the choice to the start-up probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.model.attention_plans import kernels_here
from service.model.packed_decoder import PackedDecoder
from service.runtime import build_backend
from service.settings import ServiceSettings
from tests.service.test_backend_exactness import PROMPTS, RESPONSES, encode

KERNELS = kernels_here(torch.device("cpu"), head_dim=32, dtype=torch.float32)  # the tiny model's heads


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_pinned_kernel_runs_and_scores_as_the_others(loaded_model: Any, kernel: str) -> None:
    encoded = encode(loaded_model, [(p, r) for p in PROMPTS for r in RESPONSES])  # two shared prompts
    reference = build_backend(ServiceSettings(compile_forward="off", attention_kernel="matmul"), loaded_model)
    backend = build_backend(ServiceSettings(compile_forward="off", attention_kernel=kernel), loaded_model)
    assert backend.attention_kernel == kernel  # type: ignore[attr-defined]
    expected, scored = reference.run(encoded), backend.run(encoded)
    for field in ("rewards", "gating", "score"):
        np.testing.assert_allclose(getattr(scored, field), getattr(expected, field), atol=1e-5, rtol=0)


def test_auto_leaves_the_choice_to_the_probe(loaded_model: Any) -> None:
    backend = build_backend(ServiceSettings(compile_forward="off"), loaded_model)
    assert ServiceSettings().attention_kernel == "auto"
    assert backend.attention_kernel in KERNELS  # type: ignore[attr-defined]


def test_a_kernel_that_cannot_run_here_is_refused_with_those_that_can(loaded_model: Any) -> None:
    with pytest.raises(ValueError, match="attention kernel 'flash' cannot run here") as refused:
        PackedDecoder(loaded_model.model.model, attention_kernel="flash")
    assert f"these can: {', '.join(KERNELS)}" in str(refused.value)
    assert "(auto)" in str(refused.value)


def test_an_unknown_setting_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETORM_ATTENTION_KERNEL", "flash")
    with pytest.raises(ValidationError, match="'auto', 'sdpa', 'matmul' or 'paged'"):
        ServiceSettings()
