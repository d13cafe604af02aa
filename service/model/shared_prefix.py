"""Attention of many sequences over one shared prefix, computed once for all of them.

Every response of a GRPO group reads its prompt's keys in full, then its own keys causally. Softmax
attention over two disjoint key sets splits exactly: with each part's output `o_i` and the log of its
softmax denominator `lse_i`,

    out = (exp(lse_p) * o_p + exp(lse_b) * o_b) / (exp(lse_p) + exp(lse_b))

(the merge FlashInfer's cascade attention and Hydragen use on GPUs). So the prefix part runs as one
unmasked attention of all the group's queries over the prompt's keys, read once, instead of one masked
attention per response over a gathered copy of the prompt's keys plus its own. On a 2-core AMD EPYC
(AVX2, fp32, 8 heads of 64) one group of 8 x 112-token responses over a 428-token prompt took 10-11 ms per
layer this way, against 13-23 ms for the masked SDPA buckets and 19-21 ms for vLLM's paged kernel.

On CPUs both parts use PyTorch's CPU flash kernel, which returns the log-sum-exp beside the output; on
other devices the scores are materialised and the log-sum-exp taken from them. A prefix's queries run in
chunks of at most `max_scores` scores (the caller's bound on a score tensor). Pure torch: no plans, no
engine types.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SharedPrefix", "attention_with_lse", "merge_prefix"]


@dataclass(frozen=True, slots=True)
class SharedPrefix:
    """Key rows that every query row listed reads in full (all their positions come before the queries')."""

    query_rows: torch.Tensor  # (Nq,) query rows of every sequence on this prefix
    key_rows: torch.Tensor  # (P,) into the key pool


def attention_with_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    scaling: float,
    *,
    fused: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention (n, Hq, Lq, D) over (n, Hkv, Lk, D) with an additive `bias` broadcast to
    (n, 1, Lq, Lk) or none, and the float32 log-sum-exp of the scaled, biased scores (n, Hq, Lq).
    `fused`: PyTorch's CPU flash kernel (the default on CPUs) or materialised scores (elsewhere)."""
    if fused is None:
        fused = q.device.type == "cpu"
    if fused:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=bias, scale=scaling
        )
        return out, lse
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.matmul(q.float() * scaling, k.float().transpose(-1, -2))  # (n, Hq, Lq, Lk)
    if bias is not None:
        scores = scores + bias
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.matmul(torch.exp(scores - lse[..., None]), v.float())
    return out.to(q.dtype), lse


def _prefix_part(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    prefix: SharedPrefix,
    scaling: float,
    max_scores: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prefix's output (Nq, Hq, D) and log-sum-exp (Nq, Hq) for its query rows.

    No mask, so grouped query heads fold into the query length: query head h reads key head h // group,
    laid out as (1, Hkv, group * Nq, D) against (1, Hkv, P, D)."""
    heads, dim = query.shape[1:]
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    rows, length = prefix.query_rows.numel(), prefix.key_rows.numel()
    k = keys.index_select(0, prefix.key_rows).transpose(0, 1)[None]  # (1, Hkv, P, D)
    v = values.index_select(0, prefix.key_rows).transpose(0, 1)[None]
    step = max(1, max_scores // (heads * length))
    outs, lses = [], []
    for start in range(0, rows, step):
        q = query.index_select(0, prefix.query_rows[start : start + step])  # (m, Hq, D)
        m = q.shape[0]
        q = q.view(m, kv_heads, group, dim).permute(1, 2, 0, 3).reshape(1, kv_heads, group * m, dim)
        out, lse = attention_with_lse(q, k, v, None, scaling)  # (1, Hkv, group*m, D), (1, Hkv, group*m)
        outs.append(out.view(kv_heads, group, m, dim).permute(2, 0, 1, 3).reshape(m, heads, dim))
        lses.append(lse.view(kv_heads, group, m).permute(2, 0, 1).reshape(m, heads))
    return torch.cat(outs), torch.cat(lses)


def merge_prefix(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    prefix: SharedPrefix,
    scaling: float,
    out: torch.Tensor,
    lse: torch.Tensor,
    *,
    max_scores: int,
) -> None:
    """Fold the prefix's attention into `out` (T, Hq, D), whose prefix's query rows hold each sequence's
    attention over its own keys with log-sum-exp `lse` (T, Hq), in place; at most `max_scores` query x key
    x head scores per call."""
    rows = prefix.query_rows
    prefix_out, prefix_lse = _prefix_part(query, keys, values, prefix, scaling, max_scores)
    own_out, own_lse = out.index_select(0, rows), lse.index_select(0, rows)
    top = torch.maximum(prefix_lse, own_lse)
    prefix_weight, own_weight = torch.exp(prefix_lse - top), torch.exp(own_lse - top)  # (Nq, Hq)
    merged = prefix_out.float() * prefix_weight[..., None] + own_out.float() * own_weight[..., None]
    out.index_copy_(0, rows, (merged / (prefix_weight + own_weight)[..., None]).to(out.dtype))
