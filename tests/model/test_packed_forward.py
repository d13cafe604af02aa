"""The packed forward: bucketed attention and the decoder equal transformers' own padded forward (fp32)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, LlamaConfig, MistralConfig, Qwen2Config

from service.model.attention_plans import AttentionShape, kernels_here, plan_forward
from service.model.packed_attention import MAX_BUCKET_SCORES, AttentionSequence, attend, plan_attention
from service.model.packed_decoder import PackedDecoder, PackedInput, unsupported_reason

HEADS, KV_HEADS, DIM = 4, 2, 32
CPU_KERNELS = kernels_here(torch.device("cpu"))  # matmul, sdpa, and paged where vLLM's CPU build is installed


def reference_attention(q, keys, values, sequence, scaling):  # type: ignore[no-untyped-def]
    """One sequence with an explicit visibility mask through PyTorch's SDPA (keys repeated per group)."""
    group = q.shape[1] // keys.shape[1]
    query = q[list(sequence.query_rows)].transpose(0, 1)  # (Hq, Lq, D)
    k = keys[list(sequence.key_rows)].transpose(0, 1).repeat_interleave(group, dim=0)
    v = values[list(sequence.key_rows)].transpose(0, 1).repeat_interleave(group, dim=0)
    visible = torch.tensor(sequence.key_positions)[None, :] <= torch.tensor(sequence.query_positions)[:, None]
    out = F.scaled_dot_product_attention(query, k, v, attn_mask=visible, scale=scaling)
    return out.transpose(0, 1)  # (Lq, Hq, D)


@pytest.mark.parametrize("shared", [False, True], ids=["whole", "shared-prefix"])
@pytest.mark.parametrize("kernel", ["matmul", "sdpa"])
def test_bucketed_attention_equals_masked_sdpa_per_sequence(kernel: str, shared: bool) -> None:
    """Whole sequences, and responses on a prompt either gathered whole or split off their shared prefix."""
    torch.manual_seed(0)
    sequences = []
    rows = 0
    for length in (1, 5, 130, 300, 129, 7):  # causal conversations, some over one query chunk
        span = list(range(rows, rows + length))
        sequences.append(AttentionSequence(span, list(range(length)), span, list(range(length))))
        rows += length
    trunk = list(range(rows, rows + 50))  # a shared prompt of 50 rows and two responses on top of it
    sequences.append(AttentionSequence(trunk, list(range(50)), trunk, list(range(50))))
    rows += 50
    for length in (3, 140, 1):
        branch = list(range(rows, rows + length))
        positions = list(range(50, 50 + length))
        sequences.append(AttentionSequence(branch, positions, trunk + branch, list(range(50)) + positions,
                                           shared_keys=50 if shared else 0))  # fmt: skip
        rows += length
    q = torch.randn(rows, HEADS, DIM)
    keys, values = torch.randn(rows, KV_HEADS, DIM), torch.randn(rows, KV_HEADS, DIM)
    plan = plan_attention(sequences, num_heads=HEADS, dtype=torch.float32, device=torch.device("cpu"))
    answered = torch.cat([bucket.real_rows for bucket in plan.buckets + plan.branch_buckets])
    assert sorted(answered.tolist()) == list(range(rows))  # every query row exactly once
    branch_rows = list(range(rows - 144, rows))
    assert [p.query_rows.tolist() for p in plan.prefixes] == ([branch_rows] if shared else [])
    got = attend(q, keys, values, plan, scaling=DIM**-0.5, kernel=kernel)
    for sequence in sequences:
        expected = reference_attention(q, keys, values, sequence, DIM**-0.5)
        torch.testing.assert_close(got[list(sequence.query_rows)], expected, atol=1e-5, rtol=0)


def test_buckets_stay_under_the_score_budget_and_skip_most_of_the_upper_triangle() -> None:
    length = 3000
    span = list(range(length))
    sequence = AttentionSequence(span, span, span, span)
    heads = 64
    plan = plan_attention([sequence], num_heads=heads, dtype=torch.float32, device=torch.device("cpu"))
    buckets = plan.buckets
    for bucket in buckets:
        n, lq = bucket.query_index.shape
        assert n == 1 or n * lq * bucket.key_index.shape[1] * heads <= MAX_BUCKET_SCORES
    computed = sum(b.query_index.numel() * b.key_index.shape[1] for b in buckets)
    assert computed < 0.6 * length * length  # causal chunking: about half of the full square


def test_shared_keys_that_a_query_does_not_see_in_full_are_refused() -> None:
    span = [0, 1, 2, 3]  # a causal sequence: the query at position 0 does not see key 1 of the "prefix"
    sequence = AttentionSequence(span, span, span, span, shared_keys=2)
    with pytest.raises(ValueError, match="shared keys must come before all its queries"):
        plan_attention([sequence], num_heads=HEADS, dtype=torch.float32, device=torch.device("cpu"))


@pytest.mark.parametrize("kernel", ["matmul", "sdpa"])
def test_a_padded_query_slot_never_produces_nan(kernel: str) -> None:
    sequences = [AttentionSequence([0], [0], [0], [0]), AttentionSequence([1, 2], [0, 1], [1, 2], [0, 1])]
    buckets = plan_attention(sequences, num_heads=HEADS, dtype=torch.float32, device=torch.device("cpu"))
    out = attend(torch.randn(3, HEADS, DIM), torch.randn(3, KV_HEADS, DIM), torch.randn(3, KV_HEADS, DIM),
                 buckets, scaling=1.0, kernel=kernel)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown attention kernel"):
        attend(torch.randn(3, HEADS, DIM), torch.randn(3, KV_HEADS, DIM), torch.randn(3, KV_HEADS, DIM),
               buckets, scaling=1.0, kernel="flash")


def _backbone(config_class, **extra):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=300, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=1024, **extra,
    )
    return AutoModel.from_config(config, attn_implementation="sdpa").eval()


@pytest.mark.parametrize(
    ("config_class", "extra"),
    [
        (LlamaConfig, {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
        (Qwen2Config, {}),  # q/k/v biases
        (MistralConfig, {"sliding_window": None}),
    ],
    ids=["llama3-rope", "qwen2", "mistral"],
)
def test_decoder_readouts_equal_the_transformers_forward(config_class, extra) -> None:  # type: ignore[no-untyped-def]
    backbone = _backbone(config_class, **extra)
    assert unsupported_reason(backbone) is None
    lengths = [9, 140, 33]
    ids = [torch.randint(0, 300, (n,)) for n in lengths]
    with torch.inference_mode():
        expected = [backbone(input_ids=row[None]).last_hidden_state[0] for row in ids]
    starts = [0, 9, 149]
    sequences = [
        AttentionSequence(list(range(s, s + n)), list(range(n)), list(range(s, s + n)), list(range(n)))
        for s, n in zip(starts, lengths, strict=True)
    ]
    reads = [(0, 8), (0, 2), (1, 139), (1, 0), (2, 32)]  # (sequence, position)
    readout_rows = [starts[i] + p for i, p in reads]
    readout_sequences = [
        AttentionSequence(
            [k for k, (i, _) in enumerate(reads) if i == j],
            [p for i, p in reads if i == j],
            list(sequence.key_rows),
            list(sequence.key_positions),
        )
        for j, sequence in enumerate(sequences)
    ]
    for kernel in CPU_KERNELS:  # sdpa is the accelerator default; every kernel must equal transformers
        attention, readout_attention = _plans(sequences, readout_sequences, kernel)
        packed = PackedInput(
            input_ids=torch.cat(ids),
            positions=torch.cat([torch.arange(n) for n in lengths]),
            attention=attention,
            readout_rows=torch.tensor(readout_rows),
            readout_attention=readout_attention,
        )
        hidden, _ = PackedDecoder(backbone, attention_kernel=kernel).forward(packed)
        for k, (i, p) in enumerate(reads):
            torch.testing.assert_close(hidden[k], expected[i][p], atol=1e-5, rtol=0)


def test_backbones_the_packed_forward_cannot_reproduce_are_named() -> None:
    assert "sliding-window" in str(unsupported_reason(_backbone(MistralConfig, sliding_window=16)))
    assert "sliding-window" in str(
        unsupported_reason(_backbone(Qwen2Config, use_sliding_window=True, sliding_window=16, max_window_layers=1))
    )
    gpt2 = AutoModel.from_config(__import__("transformers").GPT2Config(n_layer=1, n_embd=64, n_head=2))
    assert "model_type 'gpt2'" in str(unsupported_reason(gpt2))
    with pytest.raises(ValueError, match="does not support this backbone"):
        PackedDecoder(gpt2)


def _plans(sequences, readout_sequences, kernel):  # type: ignore[no-untyped-def]
    shape, cpu, dtype = AttentionShape(HEADS, KV_HEADS, DIM), torch.device("cpu"), torch.float32
    return plan_forward(sequences, readout_sequences, kernel=kernel, shape=shape, dtype=dtype, device=cpu)


def _causal_input(ids: list[torch.Tensor], kernel: str = "matmul") -> PackedInput:
    """Each row its own causal sequence; the last token of each is read out."""
    starts, sequences = [], []
    for row in ids:
        start = sum(len(previous) for previous in ids[: len(starts)])
        starts.append(start)
        span, positions = list(range(start, start + len(row))), list(range(len(row)))
        sequences.append(AttentionSequence(span, positions, span, positions))
    readout_sequences = [
        AttentionSequence([j], [len(row) - 1], list(s.key_rows), list(s.key_positions))
        for j, (row, s) in enumerate(zip(ids, sequences, strict=True))
    ]
    attention, readout_attention = _plans(sequences, readout_sequences, kernel)
    return PackedInput(
        input_ids=torch.cat(ids),
        positions=torch.cat([torch.arange(len(row)) for row in ids]),
        attention=attention,
        readout_rows=torch.tensor([s + len(row) - 1 for s, row in zip(starts, ids, strict=True)]),
        readout_attention=readout_attention,
    )


def test_compiled_layers_equal_eager_and_compile_once_ahead_of_traffic() -> None:
    from torch._dynamo.utils import counters

    backbone = _backbone(LlamaConfig)
    eager = PackedDecoder(backbone, attention_kernel="matmul")
    compiled = PackedDecoder(backbone, attention_kernel="matmul", compile_layers=True)
    counters.clear()
    compiled.compile_now()
    ahead = counters["stats"]["unique_graphs"]
    assert 3 <= ahead <= 6  # keys/values, query, finish for all 3 layers; size-1 row counts may be their own
    for lengths in ([9, 140, 33], [70, 5], [40], [12, 44, 81, 3]):  # new row and readout counts ([40]: one)
        packed = _causal_input([torch.randint(0, 300, (n,)) for n in lengths])
        expected, _ = eager.forward(packed)
        hidden, _ = compiled.forward(packed)
        torch.testing.assert_close(hidden, expected, atol=1e-5, rtol=0)
    assert counters["stats"]["unique_graphs"] == ahead  # traffic compiled nothing: no request pays for it


def _failing_compiler(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Any:
    raise RuntimeError("no working C++ compiler")  # what inductor raises on a machine without g++


def test_a_failed_compile_goes_back_to_the_eager_forward() -> None:
    backbone = _backbone(LlamaConfig)
    decoder = PackedDecoder(
        backbone, attention_kernel="matmul", compile_layers=True, compile_backend=_failing_compiler
    )
    with pytest.raises(Exception, match="no working C"):
        decoder.compile_now()
    assert not decoder.compiled
    packed = _causal_input([torch.randint(0, 300, (n,)) for n in (9, 30)])
    expected, _ = PackedDecoder(backbone, attention_kernel="matmul").forward(packed)
    torch.testing.assert_close(decoder.forward(packed)[0], expected, atol=0, rtol=0)
