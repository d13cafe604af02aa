"""Where one steady-state batch's time goes, per kind of operation (`paretorm bench-engine --profile`).

Issue 15 asks for the same breakdown on every machine kind, because what decides the packed forward's
speed moves with the CPU (with AMX the GEMMs run ~3x faster and everything else decides). torch.profiler
(CPU activity, no shapes or stacks: those double the step time) records one batch at a time; every aten
op's *self* time is charged to the nearest labelled scope around it. Scopes are added only for the
profile, by module hooks and by wrapping a few module-level functions, so the hot path carries no
instrumentation:
- `gemm`: every `nn.Linear` (projections, MLP, heads);
- `norm`: RMSNorm modules; `rotary`: the rotary tables and their application; `act`: the MLP apart from
  its linears (SiLU * up);
- `attention`: the attention kernel (packed: `attention_plans.run_attention`; padded: transformers'
  attention module apart from its projections and rotary), split by op into matmul, SDPA, vLLM's paged kernel,
  softmax, masking and gather/scatter (the paged kernel's cache writes count as gather/scatter);
- `layout`: laying the batch out for the packed forward (numpy + Python); `embed`, `heads`;
- every aten op outside those scopes (cat, index, copies, the padded path's mask) as `other torch ops`;
- `python outside ops`: the profiled wall minus the self time of all aten ops and inductor kernels (interpreter,
  hooks' own cost; compiled: dynamo's guards and wrappers).

A compiled packed forward (`torch.compile` of the token-wise stages, the CPU default) is profiled as it is
served: module hooks or patched helpers inside the compiled stages would make dynamo recompile or break the
graphs, so there only the eager parts are labelled (attention, layout, heads); a GEMM outside every scope
is still `gemm` by its aten name, and inductor's generated kernels (norms, rotary, SiLU * up, residual adds,
fused, so no longer separable) are `fused (inductor)`, named in the profile by `inductor_kernel_names`.
The profiled wall is a little above the unprofiled one, which is reported beside it. Each category is the
median over the profiled batches, so the column sums only approximately to the median wall.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

__all__ = ["CATEGORIES", "inductor_kernel_names", "markdown_table", "profile_batches"]

CATEGORIES = (
    "gemm", "attention matmul", "attention sdpa", "attention paged", "softmax", "masking",
    "attention gather/scatter",
    "attention other", "norm", "rotary", "act", "fused (inductor)", "embed", "heads", "layout",
    "other torch ops", "python outside ops",
)  # fmt: skip
_GEMM_OPS = ("aten::mm", "aten::addmm", "aten::linear", "mkldnn")
_OP_NAMESPACES = ("aten::", "_C::")  # PyTorch's ops and vLLM's CPU kernels (`paged_attention`)
_INDUCTOR_KERNEL = "cpp_fused"  # inductor's CPU kernels: graph_<n>_cpp_fused_<ops>
_ATTENTION_OPS = (
    (("cpu_attention_with_kv_cache",), "attention paged"),  # vLLM's CPU kernel (`paged_attention`)
    (("cpu_attn_reshape_and_cache",), "attention gather/scatter"),
    (("_scaled_dot_product", "scaled_dot_product"), "attention sdpa"),
    (("bmm", "matmul", "aten::mm", "baddbmm"), "attention matmul"),
    (("softmax",), "softmax"),
    (("add", "masked_fill", "where"), "masking"),
    (("index", "gather", "scatter", "copy"), "attention gather/scatter"),
)


def inductor_kernel_names() -> contextlib.AbstractContextManager[Any]:
    """Compile under this for the profile to see inductor's kernels by name (otherwise their time is
    charged to the compiled graph's call and reads as Python)."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch({"cpp.enable_kernel_profile": True})


@contextlib.contextmanager
def _labelled(backend: Any) -> Iterator[None]:
    """Label the model's modules and the decoder's helpers for the duration of the profile (only the eager
    parts of a compiled forward: see the module docstring)."""
    import transformers.models.llama.modeling_llama as llama

    import service.engine.transformers_backend as tb
    import service.model.packed_decoder as pd

    model = backend._model
    compiled = "compiled" in backend.forward
    handles: list[Any] = []

    def label(module: nn.Module, name: str) -> None:
        scopes: list[Any] = []

        def enter(*_: Any) -> None:
            scope = record_function(name)
            scope.__enter__()
            scopes.append(scope)

        def leave(*_: Any) -> None:
            scopes.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))

    for module in () if compiled else model.modules():
        kind = type(module).__name__
        if isinstance(module, nn.Linear):
            label(module, "gemm")
        elif kind.endswith("RMSNorm"):
            label(module, "norm")
        elif kind.endswith("RotaryEmbedding"):
            label(module, "rotary")
        elif kind.endswith("MLP"):
            label(module, "act")
        elif kind.endswith("Attention"):
            label(module, "attention")
        elif isinstance(module, nn.Embedding):
            label(module, "embed")
    patches = [(pd, "run_attention", "attention"), (tb, "build_layout", "layout"), (model, "heads", "heads")]
    if not compiled:
        patches += [(pd, "_rotate", "rotary"), (llama, "apply_rotary_pos_emb", "rotary")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, scope in patches:
        setattr(owner, name, _scoped(getattr(owner, name), scope))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for owner, name, original in originals:
            if owner is model:
                delattr(model, name)  # the instance attribute shadowed the method
            else:
                setattr(owner, name, original)


def _scoped(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with record_function(name):
            return function(*args, **kwargs)

    return wrapper


_SCOPES = frozenset({"gemm", "norm", "rotary", "act", "attention", "embed", "heads", "layout"})


def _category(event: Any) -> str:
    """The category an aten op's self time is charged to: its nearest labelled scope's (labels' own self
    time is interpreter time, left to `python outside ops`)."""
    if _INDUCTOR_KERNEL in event.name:
        return "fused (inductor)"
    scope = event.cpu_parent
    while scope is not None and scope.name not in _SCOPES:
        scope = scope.cpu_parent
    if scope is None:
        return "gemm" if any(marker in event.name for marker in _GEMM_OPS) else "other torch ops"
    if scope.name != "attention":
        return scope.name
    for markers, category in _ATTENTION_OPS:
        if any(marker in event.name for marker in markers):
            return category
    return "attention other"


def profile_batches(backend: Any, batches: Sequence[Any], warm: Sequence[Any]) -> dict[str, Any]:
    """Per-batch median ms per category over `batches` (each profiled alone), after `warm` (unprofiled,
    plus one profiled run that is discarded: the profiler's own first-use cost). Medians, because a burst
    of load from another process inflates one batch, not all; also the unprofiled wall of the same
    batches (run again afterwards)."""
    for batch in warm:
        backend.run(batch)
    per_batch: list[dict[str, float]] = []
    walls: list[float] = []
    with _labelled(backend):
        for index, batch in enumerate([*warm[-1:], *batches]):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                started = time.perf_counter()
                backend.run(batch)
                elapsed = time.perf_counter() - started
            if index == 0 and warm:
                continue
            totals: dict[str, float] = defaultdict(float)
            for event in prof.events():
                if event.name.startswith(_OP_NAMESPACES) or _INDUCTOR_KERNEL in event.name:
                    totals[_category(event)] += event.self_cpu_time_total / 1000
            totals["python outside ops"] = elapsed * 1000 - sum(totals.values())
            per_batch.append(totals)
            walls.append(elapsed * 1000)
    unprofiled = []
    for batch in batches:
        started = time.perf_counter()
        backend.run(batch)
        unprofiled.append((time.perf_counter() - started) * 1000)
    return {
        "forward": backend.forward,
        "batches": len(batches),
        "items_per_batch": round(sum(len(_items(b)) for b in batches) / len(batches), 1),
        "ms": {c: round(statistics.median(t.get(c, 0.0) for t in per_batch), 2) for c in CATEGORIES},
        "wall_ms_profiled": round(statistics.median(walls), 2),
        "wall_ms_unprofiled": round(statistics.median(unprofiled), 2),
    }


def _items(batch: Any) -> Sequence[Any]:
    return batch.conversations if hasattr(batch, "conversations") else batch


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One column per profiled configuration: `ms (share of profiled wall)` per category."""
    names = list(results)
    lines = ["| category (ms per batch, % of profiled wall) | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for category in CATEGORIES:
        cells = []
        for name in names:
            value = results[name]["ms"][category]
            share = value / results[name]["wall_ms_profiled"] * 100 if results[name]["wall_ms_profiled"] else 0
            cells.append(f"{value:.1f} ({share:.0f}%)" if value >= 0.05 else "–")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    lines.append("| wall, profiled / unprofiled | " + " | ".join(
        f"{results[n]['wall_ms_profiled']:.0f} / {results[n]['wall_ms_unprofiled']:.0f}" for n in names) + " |")
    return "\n".join(lines)
