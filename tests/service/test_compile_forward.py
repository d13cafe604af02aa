"""`compile_forward`: the service compiles the packed forward before readiness, or says why it did not."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.engine.transformers_backend import TransformersBackend
from service.runtime import build_backend, compile_ahead
from service.settings import ServiceSettings
from tests.service.test_backend_exactness import PROMPTS, RESPONSES, encode


@pytest.mark.parametrize(
    ("mode", "device", "wanted"),
    [("auto", "cpu", True), ("auto", "cuda:1", False), ("on", "cuda", True), ("off", "cpu", False)],
)
def test_auto_is_on_for_cpus_only(mode: str, device: str, wanted: bool) -> None:
    assert ServiceSettings(compile_forward=mode, device=device).compile_wanted is wanted  # type: ignore[arg-type]


def test_an_unknown_mode_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETORM_COMPILE_FORWARD", "yes")
    with pytest.raises(ValidationError, match="'auto', 'on' or 'off'"):
        ServiceSettings()


def test_the_service_compiles_ahead_and_scores_as_the_eager_forward(loaded_model: Any) -> None:
    encoded = encode(loaded_model, [(p, r) for p in PROMPTS for r in RESPONSES])
    eager = TransformersBackend(loaded_model.model).run(encoded)
    backend = build_backend(ServiceSettings(compile_forward="on"), loaded_model)
    assert backend.forward == "packed (compiled)"  # type: ignore[attr-defined]
    compiled = backend.run(encoded)
    for field in ("rewards", "gating", "score"):
        np.testing.assert_allclose(getattr(compiled, field), getattr(eager, field), atol=1e-5, rtol=0)


def _failing_compiler(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Any:
    raise RuntimeError("no working C++ compiler")


def test_auto_falls_back_to_eager_with_a_warning(loaded_model: Any, caplog: pytest.LogCaptureFixture) -> None:
    backend = TransformersBackend(loaded_model.model, compile_layers=True, compile_backend=_failing_compiler)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        compile_ahead(backend, ServiceSettings(compile_forward="auto"))
    assert backend.forward == "packed"
    assert "runs eagerly" in caplog.text and "no working C++ compiler" in caplog.text
    encoded = encode(loaded_model, [(PROMPTS[0], RESPONSES[0])])
    assert np.isfinite(backend.run(encoded).score).all()


def test_on_stops_the_start_up_and_says_how_to_fix_it(loaded_model: Any) -> None:
    backend = TransformersBackend(loaded_model.model, compile_layers=True, compile_backend=_failing_compiler)
    with pytest.raises(RuntimeError, match="--compile-forward auto"):
        compile_ahead(backend, ServiceSettings(compile_forward="on"))
