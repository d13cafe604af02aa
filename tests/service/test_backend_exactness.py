"""The transformers backend equals one-at-a-time forwards (fp32), packed or padded, shared prompts or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.engine.transformers_backend import TransformersBackend
from service.model.attention_plans import kernels_here
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


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_batches_with_and_without_sharing_equal_single_forwards(loaded_model, packed) -> None:  # type: ignore[no-untyped-def]
    pairs = [(p, r) for p in PROMPTS for r in RESPONSES]  # 2 groups of 4 sharing a prompt
    encoded = encode(loaded_model, pairs)
    assert len({e.prefix_key() for e in encoded}) == 2
    expected = np.stack([single(loaded_model, e) for e in encoded])
    computed = {}
    for share in (False, True):
        backend = TransformersBackend(loaded_model.model, share_prompts=share, packed=packed)
        assert backend.packed is packed
        assert backend.forward == ("packed" if packed else "padded (packing turned off with --no-packed)")
        rows = backend.run(encoded)
        got = np.concatenate([rows.rewards, rows.gating, rows.score[:, None]], axis=1)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        computed[share] = rows.computed_tokens
    assert computed[True] < computed[False]  # each prompt ran once


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_shared_prefix_matches_reference_coefficients(loaded_model, packed) -> None:  # type: ignore[no-untyped-def]
    encoded = encode(loaded_model, [(PROMPTS[0], r) for r in RESPONSES])
    rows = TransformersBackend(loaded_model.model, share_prompts=True, packed=packed).run(encoded)
    transform = loaded_model.model.reward_transform_matrix.detach().double().numpy()
    np.testing.assert_allclose(rows.coefficients, rows.gating @ transform.T, atol=1e-6)
    np.testing.assert_allclose(rows.score, np.sum(rows.gating * (rows.rewards @ transform), axis=1), atol=1e-5)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_prefix_state_lru_serves_a_group_split_across_batches(loaded_model, packed) -> None:  # type: ignore[no-untyped-def]
    encoded = encode(loaded_model, [(PROMPTS[1], r) for r in RESPONSES])
    expected = np.array([single(loaded_model, e)[-1] for e in encoded])
    backend = TransformersBackend(
        loaded_model.model, share_prompts=True, prefix_cache_bytes=64 * 2**20, packed=packed
    )
    first = backend.run(encoded[:1])  # a lone item: its prompt state is computed and kept
    second = backend.run(encoded[1:])  # the rest of the group, in a later batch: the prompt is not recomputed
    np.testing.assert_allclose(np.concatenate([first.score, second.score]), expected, atol=1e-5)
    prefix_len = encoded[0].prefix_len
    suffixes = [e.num_tokens - prefix_len for e in encoded[1:]]
    # Packed: exactly the responses' tokens; padded: each response padded to the longest.
    assert second.computed_tokens == (sum(suffixes) if packed else 3 * max(suffixes))
    tiny_budget = TransformersBackend(
        loaded_model.model, share_prompts=True, prefix_cache_bytes=1024, packed=packed
    )
    tiny_budget.run(encoded[:1])
    assert tiny_budget.run(encoded[1:2]).computed_tokens == encoded[1].num_tokens  # too big to keep: recomputed


@pytest.mark.parametrize("kernel", kernels_here(torch.device("cpu")))
def test_packed_mixed_batch_equals_single_forwards(  # type: ignore[no-untyped-def]
    loaded_model, kernel: str
) -> None:
    """Plain rows of very different lengths (some over one attention chunk), two GRPO groups, a lone item
    whose prompt a previous batch cached, and duplicates: one packed forward, every row exact, with every
    attention kernel (the bucket kernels attend a shared prompt once for all its responses)."""
    long_prompt = " ".join(["Summarise the following notes about rivers and mountains."] * 12)
    long_response = " ".join(["The river runs past the city and the mountain stands above it."] * 8)
    pairs = [(PROMPTS[0], r) for r in RESPONSES] + [
        ("Hi", "Hello."),
        (long_prompt, long_response),
        (long_prompt, "Short."),
        ("What is 2 + 2?", long_response),
        ("Hi", "Hello."),
    ]
    encoded = encode(loaded_model, pairs)
    assert max(e.num_tokens for e in encoded) > 200  # several 128-row query chunks
    expected = np.stack([single(loaded_model, e) for e in encoded])
    backend = TransformersBackend(
        loaded_model.model, share_prompts=True, prefix_cache_bytes=64 * 2**20, attention_kernel=kernel
    )
    lone = encode(loaded_model, [(PROMPTS[1], RESPONSES[0])])
    backend.run(lone)  # leaves PROMPTS[1]'s prompt state in the cache
    later = encode(loaded_model, [(PROMPTS[1], RESPONSES[3])])
    rows = backend.run([*encoded, *later])
    got = np.concatenate([rows.rewards, rows.gating, rows.score[:, None]], axis=1)
    np.testing.assert_allclose(got[: len(encoded)], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[len(encoded)], single(loaded_model, later[0]), atol=1e-5, rtol=0)
    # Every token once, except the shared and cached prompt tokens that ran once or not at all.
    real = sum(e.num_tokens for e in [*encoded, *later])
    # The first group's prompt runs once (3 saved), the two long-prompt items share theirs (1), so do the two
    # identical "Hi" items (1), and the cached prompt runs not at all (1).
    saved_group = 3 * encoded[0].prefix_len + encoded[5].prefix_len + encoded[4].prefix_len + later[0].prefix_len
    assert rows.computed_tokens == real - saved_group


def test_packed_bf16_stays_within_bf16_noise_of_fp32(tiny_armorm_dir) -> None:  # type: ignore[no-untyped-def]
    from service.model import load_reward_model

    fp32 = load_reward_model(tiny_armorm_dir)
    bf16 = load_reward_model(tiny_armorm_dir, dtype=torch.bfloat16)
    encoded = encode(fp32, [(p, r) for p in PROMPTS for r in RESPONSES])
    reference = TransformersBackend(fp32.model, packed=False).run(encoded)
    packed = TransformersBackend(bf16.model).run(encoded)
    assert packed.computed_tokens < reference.computed_tokens
    np.testing.assert_allclose(packed.score, reference.score, atol=0.05)
    np.testing.assert_allclose(packed.gating, reference.gating, atol=0.02)
