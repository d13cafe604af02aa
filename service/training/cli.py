"""`paretorm train grpo | pama | dpa`: argument parsing only (torch is imported after the flags check out).

    paretorm train grpo --policy smollm2 --reward-url http://127.0.0.1:8000 --prompts prompts.jsonl \\
        --steps 40 --out runs/grpo --weights verbosity=-1,instruction-following=1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.training.cgpo_cli import add_cgpo_arguments
from service.training.cgpo_config import CgpoConfig
from service.training.config import ConfigError, DpaConfig, GrpoConfig, PamaConfig, RunConfig
from service.training.offline_cli import add_mapl_arguments, add_modpo_arguments
from service.training.offline_config import MaplConfig, ModpoConfig


def name_values(text: str) -> dict[str, float]:
    """``a=1,b=-0.5`` -> ``{"a": 1.0, "b": -0.5}`` (objective names may contain dashes and dots)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        try:
            out[name] = float(value)
        except ValueError:
            name = ""
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{part!r}: write NAME=NUMBER, comma-separated")
    return out


def numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write comma-separated numbers") from None


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--policy", required=True, help="a local HF causal-LM directory, or 'smollm2' (built once, cached)")
    add("--reward-url", help="the paretorm service (comma-separated replicas); default $PARETORM_URL")
    add("--api-key", help="bearer key for the service (prefer the PARETORM_API_KEY environment variable)")
    add("--prompts", "--pairs", dest="prompts", type=Path, required=True,
        help="JSONL: 'prompt' (text) or 'messages' per line, optional 'task'; modpo/mapl: the preference pairs")
    add("--steps", type=int, required=True, help="optimisation steps (DPA: rounds)")
    add("--out", type=Path, required=True, help="run directory: metrics.jsonl, checkpoints/, final/")
    add("--weights", type=name_values, default={}, help="objective weights NAME=W,... (others weigh 0)")
    add("--objectives", type=lambda s: [n for n in s.split(",") if n], default=[],
        help="objectives PAMA combines (pama, grpo --combine pama), comma-separated; default: all")
    add("--rule-reward", dest="rule_rewards", action="append", default=[],
        help="trainer-side reward [NAME=]KIND[:ARGS]: length[:SCALE[:LOW:HIGH]], brevity[:SCALE] (repeatable)")
    add("--prompts-per-step", type=int, default=8)
    add("--num-generations", type=int, default=4, help="samples per prompt (GRPO's G, DPA's K)")
    add("--max-new-tokens", type=int, default=64)
    add("--max-prompt-tokens", type=int, default=512)
    add("--temperature", type=float, default=1.0)
    add("--top-p", type=float, default=1.0)
    add("--learning-rate", type=float, default=1e-5)
    add("--weight-decay", type=float, default=0.0)
    add("--warmup-steps", type=int, default=0)
    add("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: off)")
    add("--seed", type=int, default=0)
    add("--rollout", choices=["auto", "vllm", "generate"], default="auto",
        help="vllm (in-process vllm.LLM) or transformers generate; auto: vllm when installed")
    add("--rollout-dtype", choices=["float32", "bfloat16"], default="float32")
    add("--rollout-tensor-parallel-size", type=int, default=1, help="GPUs vLLM splits the rollout model over")
    add("--device", default="cpu", help="trainer device: cpu, cuda, cuda:N")
    add("--save-every", type=int, default=0, help="checkpoint every N steps (the last step always)")
    add("--resume", action="store_true", help="continue from the newest checkpoint under --out")
    add("--plot", action="store_true", help="draw OUT/rewards.png (per-objective curves) at the end")
    add("--tensorboard", type=Path, help="also log TensorBoard scalars to this directory (pip install tensorboard)")
    add("--eval-prompts", type=Path, help="held-out prompts scored before and after training (OUT/eval.jsonl)")
    add("--eval-samples", type=int, default=0, help="0: greedy evaluation; N: N seeded samples per prompt")
    add("--outage-timeout-s", type=float, default=1800.0, help="how long to wait out a reward-service outage")
    add("--cache-dir", type=Path, help="where --policy smollm2 is built (default ~/.cache/paretorm)")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add("--lora-rank", type=int, default=0, help="LoRA rank through peft (0: full fine-tuning)")
    add("--lora-alpha", type=float, default=16.0)
    add("--lora-dropout", type=float, default=0.0, help="keep 0 for exact old log-probs (dropout changes them)")
    add("--lora-targets", type=lambda s: tuple(n for n in s.split(",") if n), default=("all-linear",),
        help="modules the adapter wraps, comma-separated (default all-linear: every linear layer but the LM head)")
    add("--torch-threads", type=int, help="torch threads (default: $PARETORM_TORCH_THREADS, else "
        "OMP_NUM_THREADS, else one per core capped by the container's CPU quota)")
    add("--fsdp", action="store_true",
        help="under torchrun: shard the policy over the ranks (FSDP2) instead of replicating it (DDP)")


def _grpo(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--combine", choices=["weights", "direction", "gated", "pama"], default="weights",
        help="how objectives become one advantage (see README)")
    add("--direction", type=name_values, default={}, help="DPA direction NAME=V,... (with --combine direction)")
    add("--aggregation", choices=["sum_then_normalize", "normalize_then_sum"], default="sum_then_normalize")
    add("--scale-rewards", choices=["group", "batch", "none"], default="group")
    add("--loss-type", choices=["grpo", "dapo"], default="dapo")
    add("--beta", type=float, default=0.0, help="k3 KL coefficient to the frozen reference (0: no reference)")
    add("--epsilon", type=float, default=0.2)
    add("--epsilon-high", type=float, default=None)
    add("--num-iterations", type=int, default=1, help="passes over each rollout batch (mu)")
    add("--minibatches", type=int, default=1, help="gradient steps per pass")
    add("--pama-granularity", choices=["sequence", "token"], default="sequence")
    add("--pama-noon", action="store_true", help="clip per-objective advantages at 0 before PAMA combines")


def _pama(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--epsilon", type=float, default=0.2)
    add("--kl-coef", type=float, default=0.2, help="per-token KL penalty in every objective's reward")
    add("--gamma", type=float, default=1.0)
    add("--lam", type=float, default=0.95)
    add("--vf-coef", type=float, default=0.1)
    add("--value-clip", type=float, default=0.2)
    add("--ppo-epochs", type=int, default=4)
    add("--minibatches", type=int, default=1)
    add("--ratio-denominator", choices=["old", "ref"], default="old",
        help="u = pi/pi_old (standard PPO, default) or pi/pi_ref (the paper's notation)")


def _dpa(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--dpa-objectives", dest="objectives", type=lambda s: tuple(s.split(",")), default=("helpfulness", "verbosity"),
        help="the two objectives of v = (cos t, sin t), e.g. instruction-following,verbosity")
    add("--dpa-labels", dest="labels", type=lambda s: tuple(s.split(",")), default=None,
        help="their names in DPA's system prompt (default: the objective names)")
    add("--angle-range", type=numbers, default=(-45.0, 45.0), help="LOW,HIGH degrees directions are drawn from")
    add("--sft-epochs", type=int, default=2)
    add("--sft-batch-size", type=int, default=8)
    add("--sweep-angles", type=numbers, default=(-45.0, -22.5, 0.0, 22.5, 45.0),
        help="directions (degrees) evaluated on --eval-prompts at the end: the Pareto front")


_ALGORITHMS = {
    "grpo": (_grpo, GrpoConfig, "multi-objective GRPO (weights, DPA direction, gated score or PAMA)"),
    "pama": (_pama, PamaConfig, "PAMA's Noon-PPO with one value head per objective"),
    "dpa": (_dpa, DpaConfig, "DPA's directional rejection-sampling fine-tuning, with the Pareto front"),
    "cgpo": (add_cgpo_arguments, CgpoConfig, "CGPO: a mixture of judges, CRPG | CRRAFT | CODPO"),
    "modpo": (add_modpo_arguments, ModpoConfig, "MODPO: offline DPO on one objective's pairs, others as margins"),
    "mapl": (add_mapl_arguments, MaplConfig, "MAPL: DPO on paretorm augment output with the intra-sample loss"),
}


FSDP_ALGORITHMS = ("grpo",)
"""Trainers whose steps run the same number of forwards on every rank (tested with --fsdp)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretorm train", description="Train a policy on paretorm's rewards.")
    sub = parser.add_subparsers(dest="algorithm", required=True)
    for name, (add_own, _, help_text) in _ALGORITHMS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        _common(child)
        add_own(child)
    return parser


def _defaults_from_environment(args: dict[str, Any]) -> None:
    """Flags left unset take the variables the service reads too (a Job and a Deployment set them alike)."""
    if args.get("reward_url") is None:
        args["reward_url"] = os.environ.get("PARETORM_URL") or None
    threads = os.environ.get("PARETORM_TORCH_THREADS")
    if args.get("torch_threads") is None and threads:
        if not threads.isdigit():
            raise ConfigError(f"PARETORM_TORCH_THREADS={threads!r}: give a whole number of threads, or unset "
                              "it")
        args["torch_threads"] = int(threads)


def parse(argv: Sequence[str]) -> tuple[str, RunConfig, Any]:
    args = vars(build_parser().parse_args(list(argv)))
    algorithm = args.pop("algorithm")
    _, config_class, _ = _ALGORITHMS[algorithm]
    own = {k: args.pop(k) for k in list(args) if k in config_class.__dataclass_fields__}
    _defaults_from_environment(args)
    if algorithm == "cgpo":  # the single task's K is --num-generations
        own["k"] = args["num_generations"]
    run, cfg = RunConfig(**args), config_class(**own)
    if run.fsdp and algorithm not in FSDP_ALGORITHMS:
        raise ConfigError(f"--fsdp is built and tested for {', '.join(FSDP_ALGORITHMS)} only; {algorithm}'s own "
                          f"per-rank loops are not checked to run the same forwards on every rank (which FSDP "
                          f"needs): run it data parallel, torchrun without --fsdp")  # fmt: skip
    if algorithm == "grpo" and cfg.combine == "weights" and not any(run.weights.values()):
        raise ConfigError("--combine weights (the default) needs --weights NAME=W,... with a non-zero weight")
    if isinstance(cfg, ModpoConfig | MaplConfig):
        cfg.check_run(run)
    return algorithm, run, cfg


def main(argv: Sequence[str] | None = None) -> int:
    try:
        algorithm, run, cfg = parse(sys.argv[1:] if argv is None else argv)
    except ConfigError as error:
        print(f"paretorm train: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from service.training.run import run_training

    return run_training(algorithm, run, cfg)
