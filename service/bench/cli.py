"""`paretorm bench` arguments and entry point: parse, run side by side, print the table, write JSON/PNG.

The defaults reproduce the issue's anchor setting (random Llama backbone hidden 512, 4 layers, 8 heads,
19 heads; bf16 where it is faster than float32 (`--dtype auto`); ~336-token chat items; 32 single-item
clients; GRPO 64 x 8 with a 428-token shared prompt). `--quick` is the CI smoke mode: a tiny model and a few
items, every scenario still runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.bench.runner import BenchConfig


def positive_ints(text: str) -> tuple[int, ...]:
    """An argparse type for lists like `1,8` (concurrency levels, batch sizes)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,8, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for one integer >= `minimum`, refused with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated fractions like 0.25,0.5,0.9, got {text!r}"
        ) from None
    if not values or any(not 0 < v <= 1.5 for v in values):
        raise argparse.ArgumentTypeError(f"load fractions must be in (0, 1.5], got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paretorm bench", description=__doc__.split("\n\n")[0])
    one = at_least(1)
    p.add_argument("--hidden", type=one, default=512, help="backbone hidden size (default 512)")
    p.add_argument("--layers", type=one, default=4, help="backbone layers (default 4)")
    p.add_argument("--heads", type=one, default=8, help="attention heads (hidden/heads: a vLLM head size)")
    p.add_argument("--objectives", type=one, default=19, help="regression heads (default 19, ArmoRM's)")
    p.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
        help="backbone dtype everywhere (auto: bfloat16 where it measures faster on this CPU, else float32)",
    )
    p.add_argument("--items", type=one, default=512, help="chat items per throughput scenario (default 512)")
    p.add_argument("--concurrency", type=one, default=32, help="single-item clients of the headline rows")
    p.add_argument("--batch-clients", type=one, default=4, help="clients of the batched rows (4)")
    p.add_argument("--batch-size", type=one, default=64, help="items per request of the batched rows (64)")
    p.add_argument("--sweep", type=positive_ints, default=(1, 8), help="extra concurrency levels for the chart (1,8)")
    p.add_argument("--grpo-prompts", type=one, default=64, help="GRPO prompts (64)")
    p.add_argument("--grpo-group", type=one, default=8, help="responses per GRPO prompt (8)")
    p.add_argument("--shared-tokens", type=at_least(8), default=428, help="tokens of the shared GRPO prompt")
    p.add_argument("--long-tail", type=one, default=256, help="items of the long-tailed padding scenario")
    p.add_argument(
        "--latency-loads",
        type=_fractions,
        default=(0.25, 0.5, 0.9),
        help="fractions of the measured max throughput for the latency points (0.25,0.5,0.9)",
    )
    p.add_argument(
        "--latency-seconds", type=float, default=8.0, help="open-loop seconds per latency point (8)"
    )
    p.add_argument(
        "--paired-rounds", type=at_least(0), default=6,
        help="alternating rounds of paretorm and vLLM for the paired ratios (6; 0: none)",
    )
    p.add_argument(
        "--attention-kernel", choices=["auto", "sdpa", "matmul", "paged"], default="auto",
        help="the packed forward's attention kernel in every paretorm process (auto: the service's start-up "
        "probe, run once by the bench before any server starts, then pinned: started together, the servers "
        "would each probe on cores busy with the others' loading)",
    )
    p.add_argument("--no-vllm", dest="vllm", action="store_false", help="skip vLLM (its rows say 'not run')")
    p.add_argument("--json", type=Path, help="write the full result here")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write PNG charts into DIR (needs matplotlib)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke mode: hidden 128, 2 layers, 4 heads and a few items; every scenario still runs",
    )
    p.add_argument("--seed", type=int, default=0, help="model weights and traffic seed (0)")
    return p


def config_from(args: argparse.Namespace) -> BenchConfig:
    from service.bench.checkpoints import ModelShape
    from service.bench.runner import BenchConfig
    from service.model.dtype_probe import resolve_dtype

    if args.quick:
        args.hidden, args.layers, args.heads = 128, 2, 4
        args.items, args.sweep, args.long_tail = 64, (4,), 48
        args.grpo_prompts, args.grpo_group = 4, 4
        args.latency_seconds = 1.0
        args.batch_clients, args.batch_size = 2, 16
        args.concurrency = min(args.concurrency, 16)
        args.paired_rounds = min(args.paired_rounds, 2)
    for name in (
        "items",
        "concurrency",
        "batch_clients",
        "batch_size",
        "grpo_prompts",
        "grpo_group",
        "long_tail",
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})")
    if args.paired_rounds < 0:
        raise ValueError(f"--paired-rounds must be >= 0 (got {args.paired_rounds})")
    if args.shared_tokens < 16:
        raise ValueError(
            f"--shared-tokens must be >= 16 (got {args.shared_tokens}): the chat template alone needs ~10"
        )
    return BenchConfig(
        shape=ModelShape(args.hidden, args.layers, args.heads, args.objectives),
        dtype=resolve_dtype(args.dtype, "cpu"),  # once, so that every engine runs the same dtype
        items=args.items,
        concurrency=args.concurrency,
        batch_clients=args.batch_clients,
        batch_size=args.batch_size,
        sweep=tuple(v for v in args.sweep if v != args.concurrency),
        grpo_prompts=args.grpo_prompts,
        grpo_group=args.grpo_group,
        shared_tokens=args.shared_tokens,
        long_tail=args.long_tail,
        latency_loads=args.latency_loads,
        latency_seconds=args.latency_seconds,
        paired_rounds=args.paired_rounds,
        vllm=args.vllm,
        seed=args.seed,
        quick=args.quick,
        attention_kernel=args.attention_kernel,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--"]:  # `paretorm bench -- --quick ...`: the separator the top-level parser needs
        arguments = arguments[1:]
    args = build_parser().parse_args(arguments)
    try:
        cfg = config_from(args)
    except ValueError as error:
        sys.stderr.write(f"paretorm bench: {error}\n")
        return 2
    from service.bench.report import compute_ratios, format_table, write_json
    from service.bench.runner import run_bench

    def say(message: str) -> None:
        sys.stderr.write(f"[bench] {message}\n")
        sys.stderr.flush()

    result = run_bench(cfg, say)
    result["ratios"] = compute_ratios(result["scenarios"], cfg.single, cfg.batch)
    sys.stdout.write(format_table(result) + "\n")
    sys.stdout.flush()
    if args.json:
        write_json(result, args.json)
        say(f"wrote {args.json}")
    if args.plot:
        for path in _plots(result, args.plot):
            say(f"wrote {path}")
    return 0


def _plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from service.bench.plots import write_plots

    return write_plots(result, out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
