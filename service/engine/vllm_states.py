"""What the vLLM backend asks vLLM for to get each conversation's reward state and gate state.

ArmoRM needs two final hidden states per conversation: the last token's (reward embedding) and the gate
token's (gate embedding, the end of the prompt's assistant header). vLLM's poolers offer two ways:

- `AllStates`: one `token_embed` prompt (ALL pooling) per distinct conversation; vLLM returns the state of
  every token it computed, and the backend reads the two it needs. vLLM's prefix cache skips the tokens of
  blocks it already holds, so a GRPO group's shared prompt is computed once and only the first member's
  states cover the gate token: the others take it from that member (the gate state depends on the gate
  prefix alone). A gate prefix whose every block an earlier batch cached comes back in one more call with
  the gate prefixes as prompts (a prompt's last token is always computed).
- `LastStates`: two LAST-pooled `embed` prompts per conversation, the gate prefix and the whole
  conversation; the prefix cache makes the second mostly free. It costs vLLM a second request per item and
  recomputes the gate prefix's partial block, but moves only 2 x H floats per item.

Which one: `AllStates` when the engine runs in this process on one device (the CPU default): the states are
views of vLLM's hidden-state buffer, and one prompt instead of two scored 1.11x the items/s (median of 30
paired rounds of 32 chat items, bench model, bf16, 2-core Intel Xeon with AMX-BF16). `LastStates` when the
engine runs in its own process or with tensor parallelism (the GPU defaults), where every state would cross
a socket: 5.5 MB per 336-token item for an 8B model (H 4096, fp32 states), by estimate 5-15 % of an H100's
forward time for it at 2-5 GB/s (not measured: no GPU was lent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from service.engine.types import EncodedConversation

TokenIds = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class States:
    rewards: list[torch.Tensor]  # per conversation, (H,) on the host
    gates: list[torch.Tensor]  # per conversation, (H,) on the host
    computed_tokens: int


class StateLayout(Protocol):
    pooler: dict[str, Any]  # the `vllm.config.PoolerConfig` arguments the layout needs

    def states(self, llm: Any, conversations: Sequence[EncodedConversation]) -> States: ...


class AllStates:
    pooler = {"task": "token_embed", "tok_pooling_type": "ALL", "use_activation": False}

    def __init__(self, pooling_params: Any) -> None:
        # `token_embed` requests skip the prefix cache unless told (their output would be shorter than the
        # prompt); `_gate_states` reads the shorter output, so pass `skip_reading_prefix_cache=False`.
        self._pooling_params = pooling_params

    def states(self, llm: Any, conversations: Sequence[EncodedConversation]) -> States:
        prompts, slots = _unique([c.input_ids for c in conversations])
        tails = self._computed(llm, prompts)
        computed = sum(len(tail) for tail in tails)
        gate_keys = [_gate_prefix(c) for c in conversations]
        gates = _gate_states(conversations, gate_keys, [tails[s] for s in slots])
        missing = list(dict.fromkeys(key for key in gate_keys if key not in gates))
        if missing:  # every block of these gate prefixes was cached by an earlier batch
            extra = self._computed(llm, missing)
            gates.update((key, tail[-1]) for key, tail in zip(missing, extra, strict=True))
            computed += sum(len(tail) for tail in extra)
        return States([tails[s][-1] for s in slots], [gates[key] for key in gate_keys], computed)

    def _computed(self, llm: Any, prompts: Sequence[TokenIds]) -> list[torch.Tensor]:
        """Per prompt, the final states of the tokens vLLM computed: its last `len(tail)` tokens, (n, H)."""
        outputs = llm.encode(
            _token_prompts(prompts),
            pooling_params=self._pooling_params,
            pooling_task="token_embed",
            use_tqdm=False,
        )
        return [torch.as_tensor(output.outputs.data) for output in outputs]


class LastStates:
    pooler = {"seq_pooling_type": "LAST", "use_activation": False}

    def states(self, llm: Any, conversations: Sequence[EncodedConversation]) -> States:
        gate_keys = [_gate_prefix(c) for c in conversations]
        prompts, slots = _unique([*gate_keys, *(c.input_ids for c in conversations)])  # gate prompts first
        outputs = llm.encode(_token_prompts(prompts), pooling_task="embed", use_tqdm=False)
        pooled = [torch.as_tensor(output.outputs.data) for output in outputs]
        n = len(conversations)
        # Tokens submitted; vLLM's prefix cache computes fewer (its own metrics say how many).
        submitted = sum(len(ids) for ids in prompts)
        return States([pooled[s] for s in slots[n:]], [pooled[s] for s in slots[:n]], submitted)


def _gate_prefix(conversation: EncodedConversation) -> TokenIds:
    """The tokens through the gate token: their last state is ArmoRM's gate embedding."""
    return conversation.input_ids[: conversation.gate_index + 1]


def _token_prompts(prompts: Sequence[TokenIds]) -> list[dict[str, list[int]]]:
    return [{"prompt_token_ids": list(ids)} for ids in prompts]  # vllm.inputs.TokensPrompt (TypedDicts)


def _unique(prompts: Sequence[TokenIds]) -> tuple[list[TokenIds], list[int]]:
    """The distinct prompts, in first-seen order, and each input's slot among them."""
    slot: dict[TokenIds, int] = {}
    slots = [slot.setdefault(ids, len(slot)) for ids in prompts]
    return list(slot), slots


def _gate_states(
    conversations: Sequence[EncodedConversation], gate_keys: Sequence[TokenIds], tails: Sequence[torch.Tensor]
) -> dict[TokenIds, torch.Tensor]:
    """The gate state of each gate prefix that some conversation's computed tail covers."""
    gates: dict[TokenIds, torch.Tensor] = {}
    for conversation, key, tail in zip(conversations, gate_keys, tails, strict=True):
        cached = conversation.num_tokens - len(tail)  # tokens vLLM took from its prefix cache
        if key not in gates and conversation.gate_index >= cached:
            gates[key] = tail[conversation.gate_index - cached]
    return gates
