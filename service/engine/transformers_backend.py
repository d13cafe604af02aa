"""The transformers backend: runs planned batches through the native model, exactly.

For Llama-family ArmoRM backbones (the common case) the batch runs as one packed forward
(`service.model.packed_decoder`, laid out by `service.engine.packing`): no padding in any token-wise
operation, shared and cached prompts computed once, and only the read positions carried through the
last layer. Other models take the padded path, two ways, both exact against one-at-a-time forwards
(causal attention: a token's state depends only on the tokens before it):
- plain rows are right-padded with the model's pad id and run as one batch; the reward state is read at
  each row's last real token and the gate state at its gate index;
- rows sharing a prompt prefix (a GRPO group) run the prefix once, then all suffixes together on the
  prefix's cached keys and values; the gate state comes from the prefix pass.
The backend is synchronous and owned by the batcher's single worker thread: it never runs on the event
loop.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from service.engine.outputs import pack_output, rows_from_stacked
from service.engine.packing import build_layout
from service.engine.planning import as_batch
from service.engine.prefix_cache import PrefixState, PrefixStateCache
from service.engine.thread_tuning import ThreadWidthTuner
from service.engine.types import Batch, EncodedConversation, ScoreRows, ScoringBackend
from service.model.packed_decoder import PackedDecoder, unsupported_reason

__all__ = ["ScoringBackend", "TransformersBackend"]  # ScoringBackend lives in types; re-exported for callers


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model: Any,
        *,
        device: str = "cpu",
        share_prompts: bool = True,
        prefix_cache_bytes: int = 0,
        packed: bool = True,
        attention_kernel: str | None = None,
        row_multiple: int = 64,
        compile_layers: bool = False,
        compile_backend: Any = "inductor",
        thread_tuning: bool = False,
    ) -> None:
        """`attention_kernel`: None lets the decoder measure (`attention_probe`); `row_multiple`: see `packing`;
        `compile_layers`, `compile_backend`: see `PackedDecoder` (ignored on the padded path);
        `thread_tuning`: on a CPU with 2 or more torch threads, run each forward on all of them or one
        fewer, whichever measured faster lately (`service/engine/thread_tuning.py`)."""
        self._model = model
        self._row_multiple = row_multiple
        self._device = torch.device(device)
        self._share_prompts = share_prompts and hasattr(model, "hidden_states")
        self._pad_id = int(model.pad_token_id if model.pad_token_id is not None else 0)
        self._prefix_cache = PrefixStateCache(prefix_cache_bytes) if self._share_prompts and prefix_cache_bytes else None
        self._decoder = (
            PackedDecoder(
                model.model, attention_kernel=attention_kernel, compile_layers=compile_layers,
                compile_backend=compile_backend,
            )
            if packed and hasattr(model, "hidden_states") and unsupported_reason(model.model) is None
            else None
        )
        self.packed = self._decoder is not None
        threads = torch.get_num_threads()
        tuned = thread_tuning and self._device.type == "cpu" and threads > 1
        self._threads = ThreadWidthTuner(threads) if tuned else None

    @property
    def forward(self) -> str:
        """`packed`, `packed (compiled)`, or `padded (<why>)`: shown in the model card and the start-up log."""
        if self._decoder is not None:
            return "packed (compiled)" if self._decoder.compiled else "packed"
        if not hasattr(self._model, "hidden_states"):
            return "padded (sequence classifiers run their own transformers forward)"
        return f"padded ({unsupported_reason(self._model.model) or 'packing turned off with --no-packed'})"

    @property
    def threads(self) -> str:
        """`N or N-1, measured per forward` or the fixed torch thread count: for the start-up log."""
        if self._threads is None:
            return f"{torch.get_num_threads()} (fixed)" if self._device.type == "cpu" else "n/a (accelerator)"
        wide, narrow = self._threads.widths
        return f"{wide} or {narrow}, measured per forward"

    @property
    def attention_kernel(self) -> str | None:
        """The packed forward's attention kernel (measured by the probe on first use); None when padded."""
        if self._decoder is None:
            return None
        return self._decoder.attention_kernel(self._device, self._model.backbone_dtype)

    def compile_now(self) -> None:
        """Compile the packed forward ahead of traffic (see `PackedDecoder.compile_now`); a no-op when it is
        not compiled; with thread tuning, at both widths (compiled code is guarded on the thread count).
        Raises what compiling raised, having gone back to the eager forward."""
        if self._decoder is None:
            return
        if self._threads is None:
            self._decoder.compile_now()
        else:
            self._threads.at_each_width(self._decoder.compile_now)

    @torch.inference_mode()
    def run(self, batch: Batch | Sequence[EncodedConversation]) -> ScoreRows:
        """Score a planned `Batch` as planned (the batcher's path); a plain list is planned whole here."""
        planned = as_batch(batch, self._share_prompts)
        forward = self._run_packed if self._decoder is not None else self._run_unpacked
        if self._threads is None:
            return forward(planned)
        tokens = sum(conversation.num_tokens for conversation in planned.conversations)
        return self._threads.run(tokens, lambda: forward(planned))

    def _run_unpacked(self, planned: Batch) -> ScoreRows:
        batch = planned.conversations
        outputs: list[Any] = [None] * len(batch)
        computed = 0
        plain: list[int] = []
        for unit in planned.units:
            key = batch[unit.members[0]].prefix_key() if unit.prefix_len else None
            cached = self._prefix_cache is not None and key is not None and key in self._prefix_cache
            if self._share_prompts and (unit.shared or cached):
                rows = self._run_shared([batch[i] for i in unit.members], unit.prefix_len)
                suffixes = len(unit.members) * (unit.max_len - unit.prefix_len)
                computed += suffixes + (0 if cached else unit.prefix_len)
                for position, index in enumerate(unit.members):
                    outputs[index] = rows[position]
            else:
                plain.extend(unit.members)
        if plain:
            rows = self._run_padded([batch[i] for i in plain])
            computed += len(plain) * max(batch[i].num_tokens for i in plain)
            for position, index in enumerate(plain):
                outputs[index] = rows[position]
        stacked = np.stack(outputs) if outputs else np.zeros((0, 0))
        return rows_from_stacked(stacked, computed)

    def _run_packed(self, planned: Batch) -> ScoreRows:
        assert self._decoder is not None
        layout = build_layout(
            planned.conversations,
            planned.units,
            self._prefix_cache,
            plan_attention=functools.partial(
                self._decoder.plan_attention, dtype=self._model.backbone_dtype, device=self._device
            ),
            device=self._device,
            row_multiple=self._row_multiple,
        )
        hidden, kept = self._decoder.forward(layout.packed)  # (R, H)
        reward_hidden = hidden.index_select(0, torch.tensor(layout.reward_readouts, device=self._device))
        gate_rows = [max(gate.readout, 0) for gate in layout.gates]  # cached gates are filled in below
        gate_hidden = hidden.index_select(0, torch.tensor(gate_rows, device=self._device))
        for item, gate in enumerate(layout.gates):
            if gate.cached is not None:
                gate_hidden[item] = gate.cached
        if self._prefix_cache is not None:
            for (key, gate_readout), layers in zip(layout.keep_keys, kept, strict=True):
                self._prefix_cache.store(key, (hidden[gate_readout], layers))
        stacked = pack_output(self._model.heads(reward_hidden, gate_hidden))
        return rows_from_stacked(stacked, layout.computed_tokens)

    def _run_padded(self, rows: Sequence[EncodedConversation]) -> np.ndarray:
        lengths = torch.tensor([row.num_tokens for row in rows], device=self._device)
        width = int(lengths.max())
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long, device=self._device)
        for i, row in enumerate(rows):
            input_ids[i, : row.num_tokens] = torch.tensor(row.input_ids, dtype=torch.long)
        attention_mask = (torch.arange(width, device=self._device)[None, :] < lengths[:, None]).long()
        if not hasattr(self._model, "hidden_states"):
            return pack_output(self._model(input_ids, attention_mask=attention_mask))
        keep_prompts = self._prefix_cache is not None
        hidden, cache = self._model.hidden_states(input_ids, attention_mask=attention_mask, use_cache=keep_prompts)
        batch_index = torch.arange(len(rows), device=self._device)
        reward_hidden = hidden[batch_index, lengths - 1]  # (B, H)
        gate_index = torch.tensor([row.gate_index for row in rows], device=self._device)
        gate_hidden = hidden[batch_index, gate_index]  # (B, H)
        if keep_prompts:
            self._keep_prompt_states(rows, gate_hidden, cache)
        return pack_output(self._model.heads(reward_hidden, gate_hidden))

    def _keep_prompt_states(self, rows: Sequence[EncodedConversation], gate_hidden: torch.Tensor, cache: Any) -> None:
        """Store each row's prompt state from a padded pass (right padding: its first P positions are real)."""
        assert self._prefix_cache is not None
        for i, row in enumerate(rows):
            key = row.prefix_key()
            if key is None or key in self._prefix_cache:
                continue
            p = row.prefix_len
            layers = [(layer.keys[i : i + 1, :, :p], layer.values[i : i + 1, :, :p])
                      for layer in cache.layers]
            self._prefix_cache.store(key, (gate_hidden[i], layers))  # it copies the views

    def _prefix_state(self, row: EncodedConversation, prefix_len: int) -> PrefixState:
        """The prompt's gate state and keys/values: from the LRU, or one forward over the prompt."""
        key = row.input_ids[:prefix_len]
        state = self._prefix_cache.get(key) if self._prefix_cache is not None else None
        if state is None:
            prefix = torch.tensor([key], dtype=torch.long, device=self._device)
            prefix_hidden, cache = self._model.hidden_states(prefix, use_cache=True)  # (1, P, H)
            state = (prefix_hidden[0, row.gate_index], [(layer.keys, layer.values) for layer in cache.layers])
            if self._prefix_cache is not None:
                self._prefix_cache.store(key, state)
        return state

    def _run_shared(self, rows: Sequence[EncodedConversation], prefix_len: int) -> np.ndarray:
        gate_state, layers = self._prefix_state(rows[0], prefix_len)
        gate_hidden = gate_state[None, :].expand(len(rows), -1)  # (G, H)
        # Expanded views are enough: the cache concatenates new keys onto them, never writes in place.
        cache = DynamicCache(
            ddp_cache_data=[(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1)) for k, v in layers],
            config=self._model.model.config,
        )
        suffix_lengths = torch.tensor([row.num_tokens - prefix_len for row in rows], device=self._device)
        width = int(suffix_lengths.max())
        suffix = torch.full((len(rows), width), self._pad_id, dtype=torch.long, device=self._device)
        for i, row in enumerate(rows):
            suffix[i, : row.num_tokens - prefix_len] = torch.tensor(row.input_ids[prefix_len:], dtype=torch.long)
        suffix_mask = (torch.arange(width, device=self._device)[None, :] < suffix_lengths[:, None]).long()
        attention_mask = torch.cat(
            [torch.ones(len(rows), prefix_len, dtype=torch.long, device=self._device), suffix_mask], dim=1
        )  # (G, P + S)
        position_ids = (prefix_len + torch.arange(width, device=self._device)).expand(len(rows), -1)
        hidden, _ = self._model.hidden_states(
            suffix, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache
        )  # (G, S, H)
        batch_index = torch.arange(len(rows), device=self._device)
        reward_hidden = hidden[batch_index, suffix_lengths - 1]
        return pack_output(self._model.heads(reward_hidden, gate_hidden))
