"""Token ids and gate positions for fitting, produced exactly as the server produces them.

The server (``service.scoring.encoding.ChatEncoder``) renders a conversation with the checkpoint's own
chat template (``add_generation_prompt=False``) and tokenises the text with ``add_special_tokens=False``
(the template writes the BOS). Fitting must see the same ids, or the fitted heads would read other
positions than the served model, so both call the same two functions of that module.

A backbone with no gate pattern in its config gets one from ``service.model.derive_gate_pattern``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.fitting.data import DataError, Message, Skip
from service.model.errors import GatePatternNotFound
from service.model.positions import gate_position
from service.scoring.encoding import render_conversation, tokenize_texts


@dataclass(frozen=True)
class EncodedItem:
    ids: tuple[int, ...]
    gate_index: int


def encode_conversations(
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    pattern: Sequence[int],
    *,
    path: str,
    lines: Sequence[int],
    max_tokens: int | None,
) -> tuple[list[EncodedItem | None], list[Skip]]:
    """Encode every conversation; ``None`` (and a Skip) for the ones over ``max_tokens``.

    A conversation whose ids lack the gate pattern raises DataError at its file line: the template did
    not render an assistant turn after a prompt, so neither head position is defined.
    """
    texts = [render_conversation(tokenizer, m) for m in conversations]
    out: list[EncodedItem | None] = []
    skipped: list[Skip] = []
    for ids, line in zip(tokenize_texts(tokenizer, texts), lines, strict=True):
        if max_tokens is not None and len(ids) > max_tokens:
            out.append(None)
            skipped.append(Skip(line, f"{len(ids)} tokens, over the limit of {max_tokens}"))
            continue
        try:
            gate = gate_position(ids, pattern)
        except GatePatternNotFound:
            raise DataError(
                path, line,
                f"the rendered conversation does not contain the gate pattern {list(pattern)} (the prompt end "
                "followed by the assistant header); check that it has a prompt and ends with an assistant turn",
            ) from None  # fmt: skip
        out.append(EncodedItem(tuple(ids), gate))
    return out, skipped
