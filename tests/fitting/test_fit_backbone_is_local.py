"""`paretorm fit --backbone` takes local directories only (issue 11): a hub name must never download."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.fitting.cli import main


def _run(backbone: str, tmp_path: Path) -> int:
    (tmp_path / "r.jsonl").write_text("")
    (tmp_path / "p.jsonl").write_text("")
    return main(["--backbone", backbone, "--ratings", str(tmp_path / "r.jsonl"),
                 "--preferences", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "out")])


def test_a_hub_name_is_refused_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so "meta-llama/Llama-3.1-8B" cannot be a relative directory here
    assert _run("meta-llama/Llama-3.1-8B", tmp_path) == 2
    err = capsys.readouterr().err
    assert "not a local directory" in err and "never downloads" in err and "--local-dir" in err
    assert not (tmp_path / "out").exists()


def test_a_directory_without_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert _run(str(tmp_path / "empty"), tmp_path) == 2
    assert "has no config.json" in capsys.readouterr().err
