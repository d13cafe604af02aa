"""Shared-prefix attention: the log-sum-exp merge equals attention over the prefix and own keys together."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from service.model.shared_prefix import SharedPrefix, attention_with_lse, merge_prefix

HEADS, KV_HEADS, DIM = 4, 2, 32


def test_fused_and_materialised_attention_agree_on_output_and_log_sum_exp() -> None:
    torch.manual_seed(0)
    q = torch.randn(3, HEADS, 20, DIM)
    k, v = torch.randn(3, KV_HEADS, 30, DIM), torch.randn(3, KV_HEADS, 30, DIM)
    bias = torch.zeros(3, 1, 20, 30).masked_fill_(torch.rand(3, 1, 20, 30) < 0.3, float("-inf"))
    bias[..., 0] = 0.0  # every query sees at least one key
    fused_out, fused_lse = attention_with_lse(q, k, v, bias, 0.2, fused=True)
    out, lse = attention_with_lse(q, k, v, bias, 0.2, fused=False)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.2, enable_gqa=True)
    torch.testing.assert_close(fused_out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused_lse, lse, atol=1e-5, rtol=0)
    assert lse.shape == (3, HEADS, 20) and lse.dtype == torch.float32


@pytest.mark.parametrize("max_scores", [1 << 25, 2 * HEADS * 40], ids=["whole", "chunked"])
def test_merging_a_prefix_equals_attention_over_prefix_and_own_keys(max_scores: int) -> None:
    """Chunked: 2 query rows per call over the 40 prefix keys."""
    torch.manual_seed(1)
    prompt, responses = 40, [(40, 7), (47, 1), (48, 12)]  # (first row, length) of each response's own keys
    rows = 60
    query, keys, values = (torch.randn(rows, h, DIM) for h in (HEADS, KV_HEADS, KV_HEADS))
    out = torch.zeros(rows, HEADS, DIM)
    lse = torch.zeros(rows, HEADS)
    expected = torch.zeros(rows, HEADS, DIM)
    for start, length in responses:  # own keys causal, written as the branch buckets would
        own = slice(start, start + length)
        q = query[own].transpose(0, 1)[None]
        k, v = keys[own].transpose(0, 1)[None], values[own].transpose(0, 1)[None]
        above = torch.ones(length, length).triu(1).bool()
        causal = torch.zeros(length, length).masked_fill_(above, float("-inf"))
        own_out, own_lse = attention_with_lse(q, k, v, causal[None, None], DIM**-0.5)
        out[own], lse[own] = own_out[0].transpose(0, 1), own_lse[0].transpose(0, 1)
        every = torch.cat([keys[:prompt], keys[own]]).transpose(0, 1)  # prompt, then own keys
        values_every = torch.cat([values[:prompt], values[own]]).transpose(0, 1)
        mask = torch.cat([torch.zeros(length, prompt), causal], dim=1)
        expected[own] = F.scaled_dot_product_attention(
            q[0], every, values_every, attn_mask=mask, scale=DIM**-0.5, enable_gqa=True
        ).transpose(0, 1)
    readers = torch.arange(40, 60)
    prefix = SharedPrefix(readers, torch.arange(prompt))
    merge_prefix(query, keys, values, prefix, DIM**-0.5, out, lse, max_scores=max_scores)
    torch.testing.assert_close(out[readers], expected[readers], atol=1e-5, rtol=0)
