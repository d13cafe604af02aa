"""Chat templating and tokenisation, server-side, with the checkpoint's own template.

Every input form ends up as chat messages rendered by the tokenizer's template and tokenised without
adding special tokens again (the template already writes the BOS; message contents never become control
tokens, see `control_tokens`), so `prompt`/`response` pairs, raw
`messages` and OpenRLHF's pre-templated text all give the same ids for the same conversation.

Also here: where the prompt ends (`prefix_len`, for computing a shared prompt once), and the length
policy (413, or cut the prompt from the left and keep the response).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clients.protocol import Message, Prompt
from service.engine.types import EncodedConversation
from service.errors import InvalidRequest, PayloadTooLarge
from service.model.errors import GatePatternNotFound
from service.model.positions import gate_position
from service.scoring.control_tokens import LiteralContent


def prompt_messages(prompt: Prompt) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [message.model_dump() for message in prompt]


def conversation(prompt: Prompt, response: str) -> list[dict[str, str]]:
    return [*prompt_messages(prompt), {"role": "assistant", "content": response}]


def message_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [message.model_dump() for message in messages]


def render_conversation(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The conversation as the checkpoint's chat template writes it (no generation prompt)."""
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=False))


def tokenize_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """One batched tokenizer call; no special tokens added (the template already wrote the BOS)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


_SHORTEN_OR_CUT = 'shorten it, or send `"truncation": "left"` to cut the prompt from the left and keep the response'


@dataclass(frozen=True)
class EncodingPolicy:
    max_input_tokens: int
    truncation: str  # "error" or "left"


class ChatEncoder:
    """Turns conversations into `EncodedConversation`s for one model and tokenizer."""

    def __init__(self, tokenizer: Any, *, gate_pattern: Sequence[int] | None, bos_token_id: int | None) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "the checkpoint's tokenizer has no chat template; add `chat_template` to tokenizer_config.json "
                "(or a chat_template.jinja file) so conversations render as the model was trained"
            )
        self._tokenizer = tokenizer
        self._gate_pattern = tuple(gate_pattern) if gate_pattern else None
        self._bos_token_id = bos_token_id
        self._literal = LiteralContent(tokenizer, self.render)
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        self._max_token_chars = max((len(piece) for piece in vocab), default=0)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def render(self, messages: list[dict[str, str]]) -> str:
        return render_conversation(self._tokenizer, messages)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize_texts(self._tokenizer, texts)

    def encode_conversations(
        self, conversations: Sequence[list[dict[str, str]]], policy: EncodingPolicy, *, labels: Sequence[str]
    ) -> list[EncodedConversation]:
        """Render, tokenise (one batched call) and check each conversation; `labels` name them in errors.

        Message contents cannot inject control tokens (`service.scoring.control_tokens`): a response that
        writes `<|eot_id|><|start_header_id|>assistant...` is read as those characters, not as a new turn.
        """
        for label, messages in zip(labels, conversations, strict=True):
            if not messages or messages[-1]["role"] != "assistant":
                raise InvalidRequest(
                    f"{label}: the conversation must end with an assistant message (the response to score)"
                )
        texts = [self.render(messages) for messages in conversations]
        if policy.truncation == "left":  # the whole response is kept, so only it can be hopeless
            responses = [messages[-1]["content"] for messages in conversations]
            self._refuse_hopelessly_long(responses, policy.max_input_tokens, labels, "shorten the response")
        else:
            self._refuse_hopelessly_long(texts, policy.max_input_tokens, labels, _SHORTEN_OR_CUT)
        ids = self.tokenize(texts)
        for k, messages in enumerate(conversations):
            if self._literal.touches_control(messages):  # rare: re-tokenise with contents read literally
                ids[k] = self._literal.tokenize(list(messages), texts[k], labels[k])
        return [self._finish(row, policy, label) for row, label in zip(ids, labels, strict=True)]

    def encode_texts(
        self, texts: Sequence[str], policy: EncodingPolicy, *, labels: Sequence[str]
    ) -> list[EncodedConversation]:
        """Tokenise already-templated texts (OpenRLHF's `query`) and check each.

        The caller templated these texts, so their control tokens are parsed as such: whoever sends
        `/get_reward` owns the whole string (unlike message contents, see `encode_conversations`).
        """
        if policy.truncation != "left":
            self._refuse_hopelessly_long(texts, policy.max_input_tokens, labels, _SHORTEN_OR_CUT)
        return [
            self._finish(ids, policy, label) for ids, label in zip(self.tokenize(texts), labels, strict=True)
        ]

    def _refuse_hopelessly_long(self, texts: Sequence[str], max_tokens: int, labels: Sequence[str], fix: str) -> None:
        """413 before tokenising a text that cannot fit `max_tokens`.

        No token spans more characters than the vocabulary's longest piece, so a text has at least
        len / longest tokens; the check uses twice that bound, in case a normalizer drops characters.
        Tokenising 15 MB took 32 s with the tiny test tokenizer on 2 cores, on the one tokenizer thread
        every request shares; refused here, 0.2 s.
        """
        if self._max_token_chars <= 0:
            return
        for text, label in zip(texts, labels, strict=True):
            at_least = len(text) // (2 * self._max_token_chars)
            if at_least > max_tokens:
                raise PayloadTooLarge(
                    f"{label}: {len(text)} characters, so more than {at_least} tokens, over the limit of "
                    f"{max_tokens}; {fix}"
                )

    def _finish(self, ids: list[int], policy: EncodingPolicy, label: str) -> EncodedConversation:
        if not ids:
            raise InvalidRequest(f"{label}: the conversation is empty after templating")
        gate_index = self._gate_index(ids, label)
        prefix_len = gate_index + len(self._gate_pattern) if self._gate_pattern else 0
        if len(ids) <= policy.max_input_tokens:
            return EncodedConversation(tuple(ids), gate_index, prefix_len if prefix_len < len(ids) else 0)
        excess = len(ids) - policy.max_input_tokens
        if policy.truncation != "left":
            raise PayloadTooLarge(
                f"{label}: {len(ids)} tokens, over the limit of {policy.max_input_tokens}; shorten it, or send "
                '`"truncation": "left"` to cut the prompt from the left and keep the response'
            )
        return self._cut_left(ids, excess, gate_index, prefix_len, policy, label)

    def _cut_left(
        self, ids: list[int], excess: int, gate_index: int, prefix_len: int, policy: EncodingPolicy, label: str
    ) -> EncodedConversation:
        keep_head = 1 if self._bos_token_id is not None and ids[0] == self._bos_token_id else 0
        # The gate token and everything after it (assistant header, response) must survive the cut.
        protected_from = gate_index if gate_index >= 0 else len(ids) - 1
        if keep_head + excess > protected_from:
            raise PayloadTooLarge(
                f"{label}: the response alone needs {len(ids) - protected_from + keep_head} tokens, over the "
                f"limit of {policy.max_input_tokens}; cutting the prompt cannot help — shorten the response"
            )
        cut = ids[:keep_head] + ids[keep_head + excess :]
        new_gate = gate_index - excess if gate_index >= 0 else -1
        new_prefix = prefix_len - excess if prefix_len else 0
        return EncodedConversation(tuple(cut), new_gate, new_prefix, truncated_tokens=excess)

    def _gate_index(self, ids: list[int], label: str) -> int:
        if self._gate_pattern is None:
            return -1
        try:
            return gate_position(ids, self._gate_pattern)
        except GatePatternNotFound as error:
            raise InvalidRequest(
                f"{label}: no assistant turn found (the gate pattern {list(self._gate_pattern)} is missing). "
                "The conversation must end with an assistant message rendered by the model's chat template; "
                f"for /get_reward, send texts templated with that template. ({error})"
            ) from None
