"""Typed errors of the model package.

Two families, because callers must treat them differently:

* ``ModelInputError`` (a ``ValueError``): the *request* is wrong, e.g. the conversation lacks the gate
  pattern. A server maps these to a 4xx; retrying the same input never helps.
* ``CheckpointError`` (a ``ValueError``): the *checkpoint directory* is wrong (missing or refused files,
  keys that do not match). Raised only at load time; a server should refuse to start.

Every message says what was wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CheckpointError", "GatePatternNotFound", "ModelInputError"]


class ModelInputError(ValueError):
    """The model inputs cannot be scored as given (a client error, not a server fault)."""


class GatePatternNotFound(ModelInputError):
    """The token sequence has no gate pattern, so the gating network has no prompt token to read."""

    def __init__(self, pattern: Sequence[int], *, length: int, row: int | None = None) -> None:
        self.pattern = tuple(int(t) for t in pattern)
        self.length = length
        self.row = row
        where = f"row {row} " if row is not None else ""
        super().__init__(
            f"gate token pattern {list(self.pattern)} not found in {where}({length} tokens): "
            "the conversation must end with an assistant turn rendered with the checkpoint's chat template "
            "(…<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n{response}<|eot_id|>); "
            "a conversation ending with a user turn, raw text, left truncation or another tokenizer lose it"
        )


class CheckpointError(ValueError):
    """A checkpoint directory is missing files, holds refused files, or does not match the model."""
