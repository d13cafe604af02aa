"""`paretorm bench-engine`: the scoring backend alone, on any device, at any model size.

The GPU check of the performance work: no HTTP, no disk, no tokenizer. A random ArmoRM of the chosen shape
(default Llama-3-8B's: hidden 4096, 32 layers, 32 heads / 8 KV heads, 19 objectives) is built directly on
the device in the chosen dtype, and `TransformersBackend` scores synthetic token traffic side by side:
- chat items of ~`--tokens` tokens at each `--batch` size, packed forward vs transformers' padded forward;
- GRPO groups (`--grpo-prompts` x `--grpo-group`, a `--shared-tokens` prompt), prompt sharing on vs off.
Each row reports items/s, real tokens/s and model FLOPs/s; MFU divides the latter by `--peak-tflops`
(by default the card's dense bf16 peak when the device name is recognised; not computed on CPUs).
Every timed pass gets never-seen items (fresh lengths): serving sees a new packed row count on every batch,
and oneDNN pays a primitive-cache miss per new GEMM shape (~12.7 ms per batch on an AMX Xeon), which
replaying the same batches would hide.

`--profile` adds a per-op breakdown (`op_profile`) of steady-state batches at each `--batch` size, packed
and padded, and of GRPO batches (2 groups, prompt sharing on and off), and prints it as a markdown table on
stderr (the README's profile tables are this output).
`--compile` decides as `paretorm serve` does (`auto`: compiled on CPUs), so the packed rows and the packed
profile are of the forward the service would run; `off` gives the eager packed forward.

Model FLOPs are what a plain forward needs for the real tokens: every token through every layer
(2 x parameters of the projections and MLP) plus causal attention (4 x visible query-key pairs x heads x
head_dim). The packed forward skips some of that work (padding, shared prompts, the last layer away from
the read positions), so its "MFU" can count work it never did; the row's `computed_tokens` says how much
it did compute. Timings synchronise the device and keep the best of `--repeats` passes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.bench.cli import at_least, positive_ints
from service.bench.engine_levers import LEVERS

DENSE_BF16_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0))


@dataclass(frozen=True, slots=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    objectives: int = 19

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def token_flops(self) -> float:
        """Matrix-product FLOPs of one token through every layer (attention scores excluded)."""
        d = self.head_dim
        per_layer = self.hidden * d * (2 * self.heads + 2 * self.kv_heads) + 3 * self.hidden * self.intermediate
        return 2.0 * per_layer * self.layers

    def attention_flops(self, visible_pairs: int) -> float:
        return 4.0 * visible_pairs * self.heads * self.head_dim * self.layers


SHAPES = {
    "8b": Shape(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256),
    "bench": Shape(hidden=512, layers=4, heads=8, kv_heads=8, intermediate=1536, vocab=1024),
    "quick": Shape(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256, vocab=512),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paretorm bench-engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="8b", help="model shape (default 8b)")
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto",
                   help="backbone dtype (auto: bfloat16 on CUDA and on CPUs where it measures faster)")
    p.add_argument("--tokens", type=at_least(8), default=336, help="mean tokens per chat item (336)")
    p.add_argument("--batch", type=positive_ints, default=(1, 16, 64), help="chat batch sizes (1,16,64)")
    p.add_argument("--items", type=at_least(1), default=128, help="chat items per timed pass (128)")
    p.add_argument("--grpo-prompts", type=at_least(0), default=16, help="GRPO prompts per pass (16; 0: none)")
    p.add_argument("--grpo-group", type=at_least(1), default=8, help="responses per prompt (8)")
    p.add_argument("--shared-tokens", type=at_least(8), default=428, help="tokens of each GRPO prompt (428)")
    p.add_argument("--repeats", type=at_least(1), default=3, help="timed passes per row, the best kept (3)")
    p.add_argument("--peak-tflops", type=float, help="the device's dense peak for MFU (default: detected)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the packed forward, as PARETORM_COMPILE_FORWARD (auto: on CPUs)")
    p.add_argument("--profile", action="store_true", help="also break one steady-state batch down per op")
    p.add_argument("--profile-only", action="store_true", help="only the per-op breakdown (skip the timed rows)")
    p.add_argument("--levers", type=at_least(0), default=0, metavar="N",
                   help="also compare backend configurations (engine_levers) on N fresh batches of the first --batch")
    p.add_argument("--lever", action="append", choices=list(LEVERS), metavar="NAME",
                   help="only these engine_levers configurations (repeatable; the first is the baseline)")
    p.add_argument("--json", type=Path, help="write the result here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    def say(message: str) -> None:  # progress on stderr, like `paretorm bench`; the rows go to stdout
        sys.stderr.write(f"[bench-engine] {message}\n")
        sys.stderr.flush()

    result = run(args, say)
    if "profile" in result:
        from service.bench.op_profile import markdown_table

        say(f"per-op profile ({result['device']}, {args.dtype}, shape {args.shape}):\n"
            + markdown_table(result["profile"]))
    if "levers" in result:
        say("levers (same fresh batches, rotating order):\n" + json.dumps(result["levers"], indent=2))
    sys.stdout.write(json.dumps(result["rows"], indent=2) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from service.model.dtype_probe import resolve_dtype

    shape = SHAPES[args.shape]
    device = torch.device(args.device)
    args.dtype = resolve_dtype(args.dtype, args.device)
    dtype = getattr(torch, args.dtype)
    say(f"building a random {args.shape} ArmoRM on {device} ({args.dtype})")
    started = time.perf_counter()
    model = _random_armorm(shape, device, dtype, args.seed)
    built_s = time.perf_counter() - started
    peak = args.peak_tflops or _detected_peak(device)
    rng = random.Random(args.seed)
    backends = {packed: _backend(model, args, packed=packed) for packed in (True, False)}
    result: dict[str, Any] = {"shape": {"name": args.shape, **asdict(shape)}, "device": _device_name(device),
                              "dtype": args.dtype, "peak_tflops": peak, "build_s": round(built_s, 1),
                              "forward": backends[True].forward, "rows": {}}
    if args.profile or args.profile_only:
        result["profile"] = _profile(model, backends, args, shape, rng, say)
    if args.levers:
        from service.bench.engine_levers import compare_levers

        fresh = [_chat(rng, shape, args)[: args.batch[0]] for _ in range(args.levers + 2)]
        chosen = {name: LEVERS[name] for name in args.lever} if args.lever else None
        result["levers"] = compare_levers(model, fresh[2:], fresh[:2], args.device, chosen, say=say)
    if args.profile_only:
        return result
    rows = result["rows"]
    for batch in args.batch:
        passes = [_chat(rng, shape, args) for _ in range(args.repeats + 1)]  # fresh items every pass
        for packed, backend in backends.items():  # the same passes for both forwards
            name = f"chat_batch{batch}_{'packed' if packed else 'padded'}"
            say(name)
            rows[name] = _measure(backend, passes, batch, shape, peak, device)
    passes = [_grpo(rng, shape, args) for _ in range(args.repeats + 1)]
    for share in (True, False) if args.grpo_prompts else ():
        name = f"grpo_{'shared' if share else 'unshared'}"
        say(name)
        backend = _backend(model, args, share_prompts=share)
        rows[name] = _measure(backend, passes, len(passes[0]), shape, peak, device)
    check = _grpo(rng, shape, args)[: 2 * args.grpo_group] + _chat(rng, shape, args)[:8]
    packed_scores = backends[True].run(check).score
    padded_scores = backends[False].run(check).score
    result["packed_vs_padded_max_abs_score_diff"] = float(abs(packed_scores - padded_scores).max())
    return result


def _backend(model: Any, args: argparse.Namespace, *, packed: bool = True, share_prompts: bool = True) -> Any:
    """A backend as `paretorm serve` would build it for `--compile` on this device, compiled ahead (with
    inductor's kernels named for the profile when one is asked for)."""
    import contextlib

    from service.bench.op_profile import inductor_kernel_names
    from service.engine.transformers_backend import TransformersBackend
    from service.settings import ServiceSettings

    compiled = packed and ServiceSettings(device=args.device, compile_forward=args.compile).compile_wanted
    backend = TransformersBackend(model, device=args.device, packed=packed, share_prompts=share_prompts,
                                  compile_layers=compiled)
    with inductor_kernel_names() if args.profile or args.profile_only else contextlib.nullcontext():
        backend.compile_now()
    return backend


def _chat(rng: random.Random, shape: Shape, args: argparse.Namespace) -> list[Any]:
    return [_conversation(rng, shape, rng.randint(args.tokens - 20, args.tokens + 20), args.tokens // 3)
            for _ in range(args.items)]


def _grpo(rng: random.Random, shape: Shape, args: argparse.Namespace) -> list[Any]:
    groups = [_group(rng, shape, args.shared_tokens, args.grpo_group) for _ in range(args.grpo_prompts)]
    return [conversation for group in groups for conversation in group]


def _profile(model: Any, backends: dict[bool, Any], args: argparse.Namespace, shape: Shape, rng: random.Random,
             say: Callable[[str], None]) -> dict[str, Any]:
    """Per-op breakdown of 3 fresh steady-state batches per batch size and forward, and of GRPO batches of
    up to 2 groups with sharing on and off (each after 3 warm-up batches)."""
    from service.bench.op_profile import profile_batches

    out: dict[str, Any] = {}
    for batch in args.batch:
        for packed, backend in backends.items():
            name = f"{'packed' if packed else 'padded'} {batch}"
            say(f"profiling {name}")
            fresh = [_chat(rng, shape, args)[:batch] for _ in range(6)]
            out[name] = profile_batches(backend, fresh[3:], warm=fresh[:3])
    # GRPO traffic spends its time elsewhere (responses read the whole prompt: attention weighs ~2x more).
    prompts = min(2, args.grpo_prompts)
    for share in (True, False) if prompts else ():
        name = f"grpo {prompts}x{args.grpo_group} {'shared' if share else 'unshared'}"
        say(f"profiling {name}")
        backend = backends[True] if share else _backend(model, args, share_prompts=False)
        fresh = [_grpo_batch(rng, shape, args, prompts) for _ in range(6)]
        out[name] = profile_batches(backend, fresh[3:], warm=fresh[:3])
    return out


def _grpo_batch(rng: random.Random, shape: Shape, args: argparse.Namespace, prompts: int) -> list[Any]:
    return [c for _ in range(prompts) for c in _group(rng, shape, args.shared_tokens, args.grpo_group)]


def _random_armorm(shape: Shape, device: Any, dtype: Any, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig

    from service.bench.checkpoints import objective_names
    from service.model import ArmoRMHeadConfig, ArmoRMRewardModel

    config = LlamaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=8192, rope_theta=500000.0, pad_token_id=0,
    )  # fmt: skip
    head = ArmoRMHeadConfig.from_dict({"num_objectives": shape.objectives, "pad_token_id": 0,
                                       "objective_names": objective_names(shape.objectives)})
    torch.manual_seed(seed)
    with torch.device(device):
        model = ArmoRMRewardModel(config, head, attn_implementation="sdpa")
    model.model.to(dtype)  # the heads stay float32, as the loader keeps them
    return model.eval()


def _conversation(rng: random.Random, shape: Shape, length: int, prompt: int) -> Any:
    from service.engine.types import EncodedConversation

    ids = tuple(rng.randrange(2, shape.vocab) for _ in range(length))
    return EncodedConversation(ids, gate_index=prompt - 1, prefix_len=prompt)


def _group(rng: random.Random, shape: Shape, prompt_tokens: int, size: int) -> list[Any]:
    from service.engine.types import EncodedConversation

    prompt = tuple(rng.randrange(2, shape.vocab) for _ in range(prompt_tokens))
    return [
        EncodedConversation(
            prompt + tuple(rng.randrange(2, shape.vocab) for _ in range(rng.randint(80, 140))),
            gate_index=prompt_tokens - 1,
            prefix_len=prompt_tokens,
        )
        for _ in range(size)
    ]


def _measure(backend: Any, passes: Sequence[Sequence[Any]], batch: int, shape: Shape, peak: float | None,
             device: Any) -> dict[str, Any]:
    """Best of `passes[1:]` (each a fresh item set of equal size and length distribution); `passes[0]` warms up."""
    import torch

    def one_pass(items: Sequence[Any]) -> int:
        computed = 0
        for start in range(0, len(items), batch):
            computed += backend.run(items[start : start + batch]).computed_tokens
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return computed

    one_pass(passes[0])  # warm-up (allocator, kernels), untimed
    best, computed, items = float("inf"), 0, passes[1]
    for timed in passes[1:]:
        started = time.perf_counter()
        done = one_pass(timed)
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, computed, items = elapsed, done, timed
    tokens = sum(item.num_tokens for item in items)
    pairs = sum(item.num_tokens * (item.num_tokens + 1) // 2 for item in items)
    flops = shape.token_flops() * tokens + shape.attention_flops(pairs)
    row = {
        "items": len(items),
        "batch": batch,
        "items_per_s": round(len(items) / best, 2),
        "tokens_per_s": round(tokens / best, 1),
        "real_tokens": tokens,
        "computed_tokens": computed,
        "model_tflops_per_s": round(flops / best / 1e12, 3),
        "seconds": round(best, 4),
    }
    if peak:
        row["mfu"] = round(flops / best / 1e12 / peak, 4)
    return row


def _device_name(device: Any) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _detected_peak(device: Any) -> float | None:
    if device.type != "cuda":
        return None
    name = _device_name(device)
    return next((peak for marker, peak in DENSE_BF16_PEAK_TFLOPS if marker in name), None)


if __name__ == "__main__":
    raise SystemExit(main())
