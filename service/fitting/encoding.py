"""Token ids and gate positions for fitting, produced exactly as the server produces them.

The server (``service.scoring.encoding.ChatEncoder``) renders a conversation with the checkpoint's own
chat template (``add_generation_prompt=False``) and tokenises the text with ``add_special_tokens=False``
(the template writes the BOS). Fitting must see the same ids, or the fitted heads would read other
positions than the served model; the same two calls are made here.

``derive_gate_pattern`` finds the gate pattern of a backbone that has none in its config (any template,
not only Llama-3): the gate token is the last token of the rendered prompt (Llama-3: the ``<|eot_id|>``
closing the user turn); the pattern runs from it to the end of the assistant header, read by character
offsets inside a tokenised full conversation — with ByteLevel BPE a trailing ``"\\n\\n"`` merges
differently once response text follows (environment.md, "Gate-pattern pitfall").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.fitting.data import DataError, Message, Skip
from service.model.errors import GatePatternNotFound
from service.model.positions import gate_position

_PROBE_PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
_PROBE_REPLY = {"role": "assistant", "content": "Paris is the capital of France."}


@dataclass(frozen=True)
class EncodedItem:
    ids: tuple[int, ...]
    gate_index: int


def render(tokenizer: Any, messages: Sequence[Message], *, generation_prompt: bool = False) -> str:
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt))


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def derive_gate_pattern(tokenizer: Any) -> tuple[int, ...]:
    """The ids from the prompt's last token through the assistant header, as a conversation tokenises them."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the backbone's tokenizer has no chat_template; add one to tokenizer_config.json")
    prompt_text = render(tokenizer, _PROBE_PROMPT)
    header_end = len(render(tokenizer, _PROBE_PROMPT, generation_prompt=True))
    full_text = render(tokenizer, [*_PROBE_PROMPT, _PROBE_REPLY])
    if not full_text.startswith(prompt_text) or full_text.find(_PROBE_REPLY["content"], header_end) != header_end:
        raise ValueError(
            "cannot derive the gate pattern: the chat template does not render the conversation as prompt, "
            "assistant header, response. Pass the pattern explicitly (--gate-pattern ID ID ...)"
        )
    enc = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    # Character spans, not separate tokenisations: a header ending in "\n\n" may merge differently alone.
    first = next(i for i, (a, b) in enumerate(offsets) if a <= len(prompt_text) - 1 < b)
    stop = next(i for i, (a, b) in enumerate(offsets) if b > header_end)
    if offsets[stop][0] < header_end:
        raise ValueError("a token straddles the assistant header and the response; pass --gate-pattern explicitly")
    return tuple(int(t) for t in ids[first:stop])


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
    texts = [render(tokenizer, m) for m in conversations]
    out: list[EncodedItem | None] = []
    skipped: list[Skip] = []
    for ids, line in zip(tokenize(tokenizer, texts), lines, strict=True):
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
