"""A packed forward of a Llama-family backbone that computes only what a reward model reads.

The transformers forward pads every row to the longest and computes every position of every layer. A
reward model reads two states per conversation (the reward token and the gate token), so this forward:
- runs the token-wise work (embedding, norms, projections, MLP) on the real tokens laid end to end, with
  each token's own rotary position (no padding at all);
- runs attention per sequence (`attention_plans`: length buckets, or vLLM's CPU kernel over a paged
  cache), which is also how a GRPO prompt is computed once and read by every response, and how a prompt
  cached by an earlier batch is reused;
- in the last layer, computes keys and values for every row but queries, attention output, MLP and the
  final norm only for the rows whose states are read (on a 4-layer backbone that is ~20% of the GEMM work).

It calls the backbone's own modules (`input_layernorm`, `q_proj`, ..., `mlp`, `norm`, `rotary_emb`), so the
arithmetic is transformers' own and the weights are shared, not copied; only the orchestration is ours.
`unsupported_reason` says which backbones follow that structure exactly; others use the padded path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.models.llama.modeling_llama import rotate_half

from .attention_plans import AttentionPlan, AttentionShape, kernels_here, plan_forward, run_attention
from .attention_probe import choose_kernel
from .packed_attention import AttentionSequence

__all__ = ["PackedDecoder", "PackedInput", "unsupported_reason"]

_DECODER_TYPES = {"llama", "mistral", "qwen2"}


def unsupported_reason(backbone: Any) -> str | None:
    """None when `backbone` is a decoder this forward reproduces exactly; else why not."""
    config = getattr(backbone, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _DECODER_TYPES:
        return f"model_type {model_type!r} is not one of {sorted(_DECODER_TYPES)}"
    if getattr(config, "sliding_window", None) is not None and (
        model_type == "mistral" or getattr(config, "use_sliding_window", False)
    ):
        return "sliding-window attention is not implemented by the packed forward"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        return f"layer types {sorted(layer_types)} (only full attention is packed)"
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if not all(hasattr(backbone, name) for name in needed):
        return f"the backbone lacks one of {needed}"
    parts = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
    projections = ("q_proj", "k_proj", "v_proj", "o_proj")
    for layer in backbone.layers:
        if not all(hasattr(layer, part) for part in parts) or not all(
            hasattr(layer.self_attn, name) for name in projections
        ):
            return f"a decoder layer lacks one of {parts + projections}"
    return None


@dataclass(frozen=True, slots=True)
class PackedInput:
    """Everything one packed forward needs, built by the engine (see `service.engine.packing`).

    The key pool of a layer is the computed rows' keys (row i = computed token i) followed by the cached
    prompts' keys in `cached` order.
    """

    input_ids: torch.Tensor  # (T,) tokens to compute
    positions: torch.Tensor  # (T,) rotary positions
    attention: AttentionPlan  # every computed row is a query
    readout_rows: torch.Tensor  # (R,) computed rows whose final states are returned
    readout_attention: AttentionPlan  # last layer: queries are the readout rows, in readout order
    cached: Sequence[list[tuple[torch.Tensor, torch.Tensor]]] = ()  # per cached prompt, per layer (k, v)
    keep: Sequence[torch.Tensor] = field(default_factory=list)  # computed rows whose keys/values to return


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' `apply_rotary_pos_emb` for one tensor laid out (rows, heads, head_dim)."""
    cos, sin = cos[:, None, :], sin[:, None, :]
    return (x * cos) + (rotate_half(x) * sin)


# The token-wise work of a layer, cut at attention: what `compile_layers` hands to torch.compile. The
# layer is an argument (its weights are graph inputs), so one compiled graph serves every layer.
def _keys_values(
    layer: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normed states (T, H), rotated keys and values (T, kv_heads, head_dim)."""
    attention = layer.self_attn
    h = layer.input_layernorm(x)
    keys = _rotate(attention.k_proj(h).unflatten(-1, (-1, head_dim)), cos, sin)
    return h, keys, attention.v_proj(h).unflatten(-1, (-1, head_dim))


def _query(layer: Any, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Rotated queries (Tq, heads, head_dim) of the normed states `h`."""
    return _rotate(layer.self_attn.q_proj(h).unflatten(-1, (-1, head_dim)), cos, sin)


def _finish(layer: Any, residual: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """The layer's output (Tq, H): output projection and residual, then the MLP block."""
    x = residual + layer.self_attn.o_proj(mixed.flatten(1))
    return x + layer.mlp(layer.post_attention_layernorm(x))


_EAGER_STAGES = (_keys_values, _query, _finish)


class PackedDecoder:
    """Runs `PackedInput`s through a supported transformers backbone (weights shared with it)."""

    def __init__(
        self, backbone: Any, *, attention_kernel: str | None = None, compile_layers: bool = False,
        compile_backend: Any = "inductor",
    ) -> None:
        """`attention_kernel`: `matmul`, `sdpa` or `paged` (see `attention_plans`); by default chosen on the
        first plan by `attention_probe.choose_kernel` (measured on CPUs, `sdpa` on accelerators).
        `compile_layers`: run each layer's token-wise work through `torch.compile(dynamic=True)` with
        `compile_backend` (one graph per stage for all layers and row counts; attention stays eager);
        compiled on first use, or ahead of traffic by `compile_now`."""
        reason = unsupported_reason(backbone)
        if reason is not None:
            raise ValueError(f"the packed forward does not support this backbone: {reason}")
        config = backbone.config
        self._backbone = backbone
        self._shape = AttentionShape(
            heads=int(config.num_attention_heads),
            kv_heads=int(config.num_key_value_heads or config.num_attention_heads),
            head_dim=int(backbone.layers[0].self_attn.head_dim),
        )
        if attention_kernel is not None:
            weight = backbone.embed_tokens.weight
            runnable = kernels_here(weight.device, head_dim=self._shape.head_dim, dtype=weight.dtype)
            if attention_kernel not in runnable:
                raise ValueError(
                    f"attention kernel {attention_kernel!r} cannot run here ({weight.device}, head_dim "
                    f"{self._shape.head_dim}, {weight.dtype}); these can: {', '.join(runnable)}, or leave "
                    "the choice to the start-up probe (auto)"
                )
        self._attention_kernel = attention_kernel
        self._stages: tuple[Any, ...] = _EAGER_STAGES
        if compile_layers:
            self._stages = tuple(
                torch.compile(stage, dynamic=True, backend=compile_backend) for stage in _EAGER_STAGES
            )

    @property
    def compiled(self) -> bool:
        return self._stages is not _EAGER_STAGES

    @torch.inference_mode()
    def compile_now(self) -> None:
        """Compile every stage for every row count traffic brings, before traffic: a size-1 row count (one
        readout row in the last layer) is its own graph under `dynamic=True`, so both 1 and 3 rows run
        through every layer. On failure (no C++ compiler, an inductor error) the eager stages are restored
        and the error is raised for the caller to report or refuse."""
        if not self.compiled:
            return
        backbone = self._backbone
        device = backbone.embed_tokens.weight.device
        try:
            for rows in (3, 1):
                x = backbone.embed_tokens(torch.zeros(rows, dtype=torch.long, device=device))  # (rows, H)
                cos, sin = backbone.rotary_emb(x[None], torch.arange(rows, device=device)[None])
                cos, sin = cos[0], sin[0]
                keys_values, query_of, finish = self._stages
                for layer in backbone.layers:
                    h, _, _ = keys_values(layer, x, cos, sin, self._shape.head_dim)
                    query = query_of(layer, h, cos, sin, self._shape.head_dim)  # (rows, heads, head_dim)
                    x = finish(layer, x, query)  # the query stands in for attention's output: same shape
        except Exception:
            self._stages = _EAGER_STAGES
            raise

    def attention_kernel(self, device: torch.device, dtype: torch.dtype) -> str:
        """The kernel forwards on `device` use: the one given, else the probe's choice (measured once)."""
        if self._attention_kernel is None:
            shape = self._shape
            self._attention_kernel = choose_kernel(device, dtype, shape.heads, shape.kv_heads, shape.head_dim)
        return self._attention_kernel

    def plan_attention(
        self,
        sequences: Sequence[AttentionSequence],
        readout_sequences: Sequence[AttentionSequence],
        *,
        dtype: torch.dtype,
        device: torch.device,
    ) -> tuple[AttentionPlan, AttentionPlan]:
        """`PackedInput.attention` and `.readout_attention` for this backbone, with its kernel."""
        kernel = self.attention_kernel(device, dtype)
        return plan_forward(
            sequences, readout_sequences, kernel=kernel, shape=self._shape, dtype=dtype, device=device
        )

    @torch.inference_mode()
    def forward(
        self, packed: PackedInput
    ) -> tuple[torch.Tensor, list[list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Final-norm states of the readout rows (R, H), and per kept range the per-layer keys/values in
        the layout transformers' cache uses, (1, kv_heads, rows, head_dim)."""
        backbone = self._backbone
        x = backbone.embed_tokens(packed.input_ids)  # (T, H)
        cos, sin = backbone.rotary_emb(x[None], packed.positions[None])
        cos, sin = cos[0], sin[0]  # (T, head_dim)
        readout = packed.readout_rows
        kept: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in packed.keep]
        layers = backbone.layers
        keys_values, query_of, finish = self._stages
        for index, layer in enumerate(layers):
            last = index == len(layers) - 1
            h, keys, values = keys_values(layer, x, cos, sin, self._shape.head_dim)
            for slot, kept_rows in enumerate(packed.keep):
                kept[slot].append(
                    (keys.index_select(0, kept_rows).transpose(0, 1)[None],
                     values.index_select(0, kept_rows).transpose(0, 1)[None])
                )
            if packed.cached:
                keys = torch.cat([keys, *(state[index][0][0].transpose(0, 1) for state in packed.cached)])
                values = torch.cat([values, *(state[index][1][0].transpose(0, 1) for state in packed.cached)])
            if last:
                h, residual = h.index_select(0, readout), x.index_select(0, readout)
                q_cos, q_sin = cos.index_select(0, readout), sin.index_select(0, readout)
                plan = packed.readout_attention
            else:
                residual, q_cos, q_sin, plan = x, cos, sin, packed.attention
            query = query_of(layer, h, q_cos, q_sin, self._shape.head_dim)
            mixed = run_attention(query, keys, values, plan, layer.self_attn.scaling)
            x = finish(layer, residual, mixed)
        return backbone.norm(x), kept
