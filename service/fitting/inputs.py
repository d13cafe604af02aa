"""Checks of `paretorm fit`'s inputs that need no torch: `run_fit` runs them first, so a wrong path answers
in a fraction of a second instead of after torch and transformers have loaded (~5 s on 2 cores)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.preference.data import require_file


def check_local_backbone(backbone: Path) -> None:
    """Refuse anything but a local model directory before any loading: nothing may be downloaded.

    `from_pretrained("meta-llama/...")` would fetch a hub repository (and run whatever it ships); the
    fitter, like `paretorm serve`, only ever reads a directory the operator put on disk.
    """
    if not backbone.is_dir():
        raise ValueError(
            f"--backbone {backbone} is not a local directory; paretorm never downloads models. Download the "
            "backbone yourself (e.g. `huggingface-cli download NAME --local-dir DIR`) and pass --backbone DIR"
        )
    if not (backbone / "config.json").is_file():
        raise ValueError(
            f"--backbone {backbone} has no config.json; pass the directory that holds the backbone's "
            "config.json, weights and tokenizer"
        )


def check_inputs(backbone: Path, data_files: Sequence[Path | None]) -> None:
    """The backbone is a local model directory and every data file given exists (``ValueError`` if not)."""
    check_local_backbone(Path(backbone))
    for path in data_files:
        if path is not None:
            require_file(path)
