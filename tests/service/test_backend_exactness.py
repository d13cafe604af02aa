"""The transformers backend equals one-at-a-time forwards: padded batches and shared prompts (fp32)."""

from __future__ import annotations

import numpy as np
import torch

from service.engine.transformers_backend import TransformersBackend
from service.scoring.encoding import ChatEncoder, EncodingPolicy, conversation

PROMPTS = ["Explain photosynthesis in one sentence.", "List three prime numbers, please, in order."]
RESPONSES = ["Plants turn light into sugar.", "2, 3, 5.", "No.", "Photosynthesis converts light energy, water "
             "and carbon dioxide into glucose and oxygen inside chloroplasts."]


def encode(loaded, pairs):  # type: ignore[no-untyped-def]
    encoder = ChatEncoder(loaded.tokenizer, gate_pattern=loaded.model.gating_token_pattern,
                          bos_token_id=loaded.tokenizer.bos_token_id)
    conversations = [conversation(p, r) for p, r in pairs]
    return encoder.encode_conversations(conversations, EncodingPolicy(512, "error"), labels=["x"] * len(pairs))


def single(loaded, encoded):  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        out = loaded.model(torch.tensor([encoded.input_ids]))
    return np.concatenate([out.rewards[0], out.gating[0], [float(out.score[0])]])


def test_padded_and_shared_batches_equal_single_forwards(loaded_model) -> None:  # type: ignore[no-untyped-def]
    pairs = [(p, r) for p in PROMPTS for r in RESPONSES]  # 2 groups of 4 sharing a prompt
    encoded = encode(loaded_model, pairs)
    assert len({e.prefix_key() for e in encoded}) == 2
    expected = np.stack([single(loaded_model, e) for e in encoded])
    computed = {}
    for share in (False, True):
        backend = TransformersBackend(loaded_model.model, share_prompts=share)
        rows = backend.run(encoded)
        got = np.concatenate([rows.rewards, rows.gating, rows.score[:, None]], axis=1)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        computed[share] = rows.computed_tokens
    assert computed[True] < computed[False]  # each prompt ran once


def test_shared_prefix_matches_reference_coefficients(loaded_model) -> None:  # type: ignore[no-untyped-def]
    encoded = encode(loaded_model, [(PROMPTS[0], r) for r in RESPONSES])
    rows = TransformersBackend(loaded_model.model, share_prompts=True).run(encoded)
    transform = loaded_model.model.reward_transform_matrix.detach().double().numpy()
    np.testing.assert_allclose(rows.coefficients, rows.gating @ transform.T, atol=1e-6)
    np.testing.assert_allclose(rows.score, np.sum(rows.gating * (rows.rewards @ transform), axis=1), atol=1e-5)


def test_prefix_state_lru_serves_a_group_split_across_batches(loaded_model) -> None:  # type: ignore[no-untyped-def]
    encoded = encode(loaded_model, [(PROMPTS[1], r) for r in RESPONSES])
    expected = np.array([single(loaded_model, e)[-1] for e in encoded])
    backend = TransformersBackend(loaded_model.model, share_prompts=True, prefix_cache_bytes=64 * 2**20)
    first = backend.run(encoded[:1])  # a lone item: its prompt state is computed and kept
    second = backend.run(encoded[1:])  # the rest of the group, in a later batch: the prompt is not recomputed
    np.testing.assert_allclose(np.concatenate([first.score, second.score]), expected, atol=1e-5)
    prefix_len = encoded[0].prefix_len
    assert second.computed_tokens == 3 * (max(e.num_tokens for e in encoded[1:]) - prefix_len)
    tiny_budget = TransformersBackend(loaded_model.model, share_prompts=True, prefix_cache_bytes=1024)
    tiny_budget.run(encoded[:1])
    assert tiny_budget.run(encoded[1:2]).computed_tokens == encoded[1].num_tokens  # too big to keep: recomputed
