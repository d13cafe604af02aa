"""A stand-in for `vllm.LLM.encode` with vLLM's block prefix cache, without vLLM.

What the vLLM backend relies on, kept: one output per prompt, in order. With the `embed` task (LAST pooling)
it holds the prompt's last state, (H,); with `token_embed` (ALL pooling) the states of the tokens computed
in this call only, (n, H). A prompt's leading whole blocks that an earlier prompt (in this call or an
earlier one) put in the cache are skipped, if the pooling parameters say `skip_reading_prefix_cache=False`
(`READING_CACHE` stands in for that `vllm.PoolingParams`); `token_embed` requests otherwise do not read the
cache. The last token is always computed. The state of position i is `sum(ids[: i + 1])` (repeated over
`hidden` features), a function of the prefix alone, as a causal model's is, so a test can tell which
position a state came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from service.model.outputs import RewardOutput

READING_CACHE = SimpleNamespace(skip_reading_prefix_cache=False)


@dataclass
class _Pooled:
    data: torch.Tensor


@dataclass
class _Output:
    outputs: _Pooled


@dataclass
class FakePoolingLLM:
    block_size: int = 2
    hidden: int = 4
    calls: list[list[tuple[int, ...]]] = field(default_factory=list)
    _blocks: set[tuple[int, ...]] = field(default_factory=set)

    def encode(
        self, prompts: list[dict[str, Any]], *, pooling_task: str, pooling_params: Any = None, **_: Any
    ) -> list[_Output]:
        assert pooling_task in ("embed", "token_embed"), pooling_task
        all_states = pooling_task == "token_embed"
        read_cache = not all_states or getattr(pooling_params, "skip_reading_prefix_cache", None) is False
        batch = [tuple(p["prompt_token_ids"]) for p in prompts]
        self.calls.append(batch)
        states = [self._states(ids, read_cache=read_cache) for ids in batch]
        return [_Output(_Pooled(tail if all_states else tail[-1])) for tail in states]

    def _states(self, ids: tuple[int, ...], *, read_cache: bool) -> torch.Tensor:
        cached = 0
        while read_cache and cached + self.block_size < len(ids):
            if ids[: cached + self.block_size] not in self._blocks:
                break
            cached += self.block_size
        full = len(ids) - len(ids) % self.block_size
        self._blocks.update(ids[:end] for end in range(self.block_size, full + 1, self.block_size))
        sums = torch.cumsum(torch.tensor(ids, dtype=torch.float32), 0)[cached:]  # (computed,)
        return sums[:, None].expand(-1, self.hidden).clone()  # (computed, hidden)


class RecordingHeads:
    """Stands in for ArmoRM's heads (on an accelerator, or not): records where its inputs live and, when
    they are real tensors, their values; answers on the host."""

    def __init__(self) -> None:
        self.devices: list[torch.device] = []
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (reward (B, H), gate (B, H)) per call

    def heads(self, reward_hidden: torch.Tensor, gate_hidden: torch.Tensor) -> RewardOutput:
        self.devices += [reward_hidden.device, gate_hidden.device]
        if not reward_hidden.is_meta:
            self.inputs.append((reward_hidden.clone(), gate_hidden.clone()))
        b = reward_hidden.shape[0]
        zeros = torch.zeros(b, 2)
        score = torch.arange(b, dtype=torch.float)
        return RewardOutput(rewards=zeros, gating=zeros, coefficients=zeros, score=score)
