"""Message text must not inject control tokens: a response cannot write its own `<|eot_id|>`.

A chat template renders messages into one string, and tokenising that string with special-token parsing
on (which the template's own markers need) would also parse `<|eot_id|><|start_header_id|>assistant...`
written *inside* a message as real control tokens. The gate token is the last occurrence of that pattern,
so a response containing it would move the gate into itself and pick its own gating weights: reward
hacking. `LiteralContent` keeps content literal:

- `touches_control(messages)`: one regex over the contents for any added-token string. Nearly every
  conversation has none and keeps the single batched tokenisation of the whole rendered text, so ids
  (and scores) of normal text are exactly what they always were.
- `tokenize(messages, rendered, label)`: for the rare conversation that has one, the template is
  rendered again with unguessable sentinels as contents, which locates every content in the real text
  (verbatim or trimmed, proven by rebuilding the text exactly). The text is tokenised whole as usual, and
  each control token lying in a content is replaced by the ordinary tokens of its characters
  (`split_special_tokens=True`): `<|eot_id|>` in a response reads as those ten characters, and every id
  outside the contents is the one the whole text always had (tokenising the pieces apart would not be:
  pre-tokenisers treat `"\n\n"` at the end of a string differently). A template that repeats or
  rewrites contents so that this cannot be proven is refused (422) for such text only.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from service.errors import InvalidRequest

__all__ = ["LiteralContent"]

Render = Callable[[list[dict[str, str]]], str]


class LiteralContent:
    """Tokenises rendered conversations so that message contents never yield control tokens."""

    def __init__(self, tokenizer: Any, render: Render) -> None:
        self._tokenizer = tokenizer
        self._render = render
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        strings = sorted({str(token) for token in added.values() if str(token)}, key=len, reverse=True)
        self._control = re.compile("|".join(map(re.escape, strings)) if strings else "(?!)")  # (?!): never
        self._control_ids = frozenset(int(i) for i in added)
        # Cheap first test: Python's regex tries each of (for Llama 3) 256 alternatives at every character,
        # while `in` over their few distinct two-character openings ("<|") is one fast scan each.
        self._openings = frozenset(text[:2] for text in strings)

    def touches_control(self, messages: Sequence[dict[str, str]]) -> bool:
        """Whether any message content contains the text of an added (control) token."""
        return any(
            any(opening in message["content"] for opening in self._openings)
            and self._control.search(message["content"]) is not None
            for message in messages
        )

    def tokenize(self, messages: list[dict[str, str]], rendered: str, label: str) -> list[int]:
        """Ids of `rendered` (the template's output for `messages`) with every content read literally.

        The whole text is tokenised as usual (so every id outside the contents is what it always is);
        then each control token whose characters lie in a content is replaced by the ordinary tokens of
        those characters. Proof at the end: the control tokens left are exactly the template's own.
        """
        skeleton, order = self._skeleton(messages, label)
        spans = _content_spans(rendered, skeleton, [messages[i]["content"] for i in order], label)
        encoded = self._tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = []
        for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
            if token in self._control_ids and any(start < b and a < end for a, b in spans):
                ids += self._tokenizer(rendered[start:end], add_special_tokens=False,
                                       split_special_tokens=True)["input_ids"]
            else:
                ids.append(token)
        template_controls = [m.group() for piece in skeleton for m in self._control.finditer(piece)]
        kept = [token for token in ids if token in self._control_ids]
        if kept != list(self._tokenizer.convert_tokens_to_ids(template_controls)):
            raise _unprovable(label, "its control tokens differ from the template's own")
        return ids

    def _skeleton(self, messages: list[dict[str, str]], label: str) -> tuple[list[str], list[int]]:
        """The template's text between contents, and which message each content slot holds, in order."""
        nonce = secrets.token_hex(8)
        sentinels = [f"PARETORM{nonce}S{i}E" for i in range(len(messages))]
        text = self._render([{**m, "content": s} for m, s in zip(messages, sentinels, strict=True)])
        found = []
        for i, sentinel in enumerate(sentinels):
            if text.count(sentinel) != 1:
                raise _unprovable(label, "the chat template does not write each message exactly once")
            found.append((text.index(sentinel), i))
        found.sort()
        pieces, cursor = [], 0
        for position, i in found:
            pieces.append(text[cursor:position])
            cursor = position + len(sentinels[i])
        pieces.append(text[cursor:])
        return pieces, [i for _, i in found]


def _content_spans(
    rendered: str, skeleton: list[str], contents: list[str], label: str
) -> list[tuple[int, int]]:
    """Where each content sits in `rendered` (verbatim or trimmed), proven by rebuilding `rendered` exactly."""
    if not rendered.startswith(skeleton[0]):
        raise _unprovable(label, "the template's output does not start as its skeleton does")
    cursor, spans = len(skeleton[0]), []
    for content, frame in zip(contents, skeleton[1:], strict=True):
        for candidate in dict.fromkeys((content, content.strip())):
            if rendered.startswith(candidate + frame, cursor):
                spans.append((cursor, cursor + len(candidate)))
                cursor += len(candidate) + len(frame)
                break
        else:
            raise _unprovable(label, "the chat template rewrites message contents")
    if cursor != len(rendered):
        raise _unprovable(label, "the template's output is longer than its skeleton and contents")
    return spans


def _unprovable(label: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"{label}: a message contains the text of a control token (e.g. <|eot_id|>), and {why}, so paretorm "
        "cannot prove the text stays literal; remove control-token strings from the messages"
    )
