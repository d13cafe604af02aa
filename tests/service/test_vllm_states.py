"""What the vLLM backend asks vLLM for, and where each item's two states come from (issue 15).

`AllStates`: one `token_embed` prompt per distinct conversation; the reward state is the last computed one,
the gate state the one at the gate index. A gate token inside blocks that vLLM's prefix cache served is
taken from the conversation that computed it, or, when an earlier batch did, from one more call with the
gate prefix as the prompt. `LastStates`: the gate prefix and the whole conversation as two LAST-pooled
prompts. The fake keeps vLLM's block cache (tests/support/fake_vllm.py).
"""

from __future__ import annotations

import torch

from service.engine.types import EncodedConversation
from service.engine.vllm_backend import VllmBackend
from service.engine.vllm_states import AllStates, LastStates
from tests.support.fake_vllm import READING_CACHE, FakePoolingLLM, RecordingHeads


def conv(ids: tuple[int, ...], gate_index: int) -> EncodedConversation:
    return EncodedConversation(ids, gate_index=gate_index, prefix_len=gate_index + 1)


def states(heads: RecordingHeads, call: int = -1) -> tuple[list[float], list[float]]:
    """The reward and gate states' first feature per item: the sum of the ids up to that position."""
    reward, gate = heads.inputs[call]
    return reward[:, 0].tolist(), gate[:, 0].tolist()


def backend(
    layout: AllStates | LastStates, block_size: int = 2
) -> tuple[VllmBackend, FakePoolingLLM, RecordingHeads]:
    heads, llm = RecordingHeads(), FakePoolingLLM(block_size=block_size)
    return VllmBackend(llm, heads, layout), llm, heads


def test_one_prompt_per_distinct_conversation_and_the_gate_state_from_whoever_computed_it() -> None:
    service, llm, heads = backend(AllStates(READING_CACHE))
    a, b = conv((5, 6, 7, 8), gate_index=1), conv((5, 6, 9), gate_index=1)  # one GRPO prompt (5, 6)
    rows = service.run([a, b, a])
    assert llm.calls == [[(5, 6, 7, 8), (5, 6, 9)]]  # the repeat is not sent; no gate prompts
    assert states(heads) == ([26.0, 20.0, 26.0], [11.0, 11.0, 11.0])  # b's gate token was cached: a's state
    assert rows.computed_tokens == 4 + 1


def test_a_gate_prefix_cached_by_an_earlier_batch_comes_back_in_one_more_call() -> None:
    service, llm, heads = backend(AllStates(READING_CACHE))
    service.run([conv((5, 6, 7, 8), gate_index=1)])
    rows = service.run([conv((5, 6, 10, 11), gate_index=1), conv((1, 2, 3), gate_index=2)])
    assert llm.calls[1:] == [[(5, 6, 10, 11), (1, 2, 3)], [(5, 6)]]
    assert states(heads) == ([32.0, 6.0], [11.0, 6.0])
    assert rows.computed_tokens == 2 + 3 + 2  # the gate prompt's last token is always computed


def test_without_reading_the_cache_every_token_is_computed_and_no_gate_call_is_needed() -> None:
    service, llm, heads = backend(AllStates(pooling_params=None))  # vLLM's default for token_embed
    service.run([conv((5, 6, 7, 8), gate_index=1)])
    rows = service.run([conv((5, 6, 10, 11), gate_index=1)])
    assert len(llm.calls) == 2 and states(heads) == ([32.0], [11.0]) and rows.computed_tokens == 4


def test_last_states_send_the_gate_prefixes_first_then_the_conversations_each_once() -> None:
    service, llm, heads = backend(LastStates())
    a, b = conv((5, 6, 7, 8), gate_index=1), conv((5, 6, 9), gate_index=1)
    rows = service.run([a, b, a])
    assert llm.calls == [[(5, 6), (5, 6, 7, 8), (5, 6, 9)]]  # the shared gate prompt once
    assert states(heads) == ([26.0, 20.0, 26.0], [11.0, 11.0, 11.0])
    assert rows.computed_tokens == 2 + 4 + 3  # submitted: vLLM's own metrics count what its cache saved


def test_the_states_go_to_the_heads_in_fp32() -> None:
    for layout in (AllStates(READING_CACHE), LastStates()):
        service, _, heads = backend(layout, block_size=4)
        service.run([conv((3, 4, 5), gate_index=0)])
        reward, gate = heads.inputs[0]
        assert reward.dtype == gate.dtype == torch.float32
        assert states(heads) == ([12.0], [3.0])
