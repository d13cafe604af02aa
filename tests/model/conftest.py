"""Model-test fixtures: sample conversations and a right-padding encoder for the tiny tokenizer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedTokenizerFast

Conversation = list[dict[str, str]]

# Mixed lengths, system prompts and multi-turn: the gate must land on the *last* assistant header.
CONVERSATIONS: list[Conversation] = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [
        {"role": "user", "content": 'What are some synonyms for the word "beautiful"?'},
        {
            "role": "assistant",
            "content": "Nicely, Beautifully, Handsome, Stunning, Wonderful, Gorgeous, Pretty",
        },
    ],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a Python function that returns the sum of a list."},
        {"role": "assistant", "content": "def total(xs):\n    return sum(xs)"},
    ],
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And its river?"},
        {"role": "assistant", "content": "The Seine flows through Paris, the capital city of France."},
    ],
    [
        {"role": "user", "content": "Explain why the sky is blue."},
        {"role": "assistant", "content": "Rayleigh."},
    ],
    [
        {"role": "user", "content": "List three steps to read a file."},
        {"role": "assistant", "content": "First open it; second read it; third close it. " * 4},
    ],
    [
        {"role": "user", "content": "Is it safe?"},
        {"role": "assistant", "content": "I cannot help with that."},
    ],
]


@pytest.fixture(scope="session")
def encode(tiny_tokenizer: PreTrainedTokenizerFast) -> Callable[[Conversation], list[int]]:
    """Render with the checkpoint's chat template, then tokenise without extra specials (as ArmoRM)."""

    def _encode(messages: Conversation) -> list[int]:
        text = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
        return list(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])

    return _encode


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with each row padded on the right to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


@pytest.fixture(scope="session")
def pad_rows() -> Callable[[list[list[int]], int], tuple[torch.Tensor, torch.Tensor]]:
    """``right_pad`` as a fixture, for test modules (which cannot import conftest)."""
    return right_pad


@pytest.fixture(scope="session")
def batch(
    encode: Callable[[Conversation], list[int]], tiny_tokenizer: PreTrainedTokenizerFast
) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """The seven conversations as token rows, plus their right-padded ids and attention mask."""
    rows = [encode(c) for c in CONVERSATIONS]
    assert len({len(r) for r in rows}) == len(rows), "rows must have mixed lengths"
    ids, mask = right_pad(rows, tiny_tokenizer.pad_token_id)
    return rows, ids, mask
