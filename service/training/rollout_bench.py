"""`paretorm bench-rollout`: rollout tokens/s of vLLM vs ``transformers.generate`` on one policy, side by side.

Both engines get the same chat-templated prompts, the same ``n``, ``max_new_tokens``, temperature and top-p,
and the same seeds; each is warmed up once, then timed over ``--repeats`` rounds, alternating engines so
that a noisy neighbour slows both. Printed: generated tokens per second for each engine and their ratio.

    paretorm bench-rollout --policy smollm2 --prompts service/training/demo/prompts.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEMO_PROMPTS = Path(__file__).parent / "demo" / "prompts.jsonl"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretorm bench-rollout", description=__doc__.split("\n")[0])
    parser.add_argument("--policy", required=True, help="a local causal-LM directory, or 'smollm2'")
    parser.add_argument("--prompts", type=Path, default=DEMO_PROMPTS)
    parser.add_argument("--num-prompts", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="both engines' dtype")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from service.training.config import ConfigError, check_policy
    from service.training.data import read_prompts

    try:  # before torch loads: a wrong path answers at once, in one line
        check_policy(args.policy)
        rows = read_prompts(args.prompts)[: args.num_prompts]
    except ConfigError as error:
        print(f"paretorm bench-rollout: {error}", file=sys.stderr)
        return 2
    from service.training.policy import load_policy, resolve_policy_dir
    from service.training.rollout import GenerateRollout, Sampling, VllmRollout

    policy = load_policy(resolve_policy_dir(args.policy))
    prompts = [policy.render(row.as_messages(), 512) for row in rows]
    sampling = Sampling(args.max_new_tokens, args.temperature)
    engines = {
        "vllm": VllmRollout(policy, dtype=args.dtype, max_model_len=512 + args.max_new_tokens + 8, seed=0,
                            sync_dir=Path("/nonexistent")),  # fmt: skip
        "generate": GenerateRollout(policy),
    }
    import torch

    policy.model.to(getattr(torch, args.dtype))
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for round_index in range(args.repeats + 1):
        for name, engine in engines.items():
            started = time.perf_counter()
            out = engine.generate(prompts, args.num_generations, sampling, seed=round_index)
            seconds = time.perf_counter() - started
            if round_index:  # round 0 warms both engines up
                rates[name].append(sum(len(c.token_ids) for group in out for c in group) / seconds)
    result = {name: statistics.median(values) for name, values in rates.items()}
    result["vllm_over_generate"] = result["vllm"] / result["generate"]
    print(f"policy {policy.path}: {args.num_prompts} prompts x {args.num_generations} samples x "
          f"<= {args.max_new_tokens} tokens, temperature {args.temperature}, both in {args.dtype}")  # fmt: skip
    print(f"tokens/s (median of {args.repeats}): vllm {result['vllm']:.0f}, generate {result['generate']:.0f}, "
          f"ratio {result['vllm_over_generate']:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
