"""``paretorm fit``: build an ArmoRM-layout reward model from a backbone, rating data and preference data.

The lead wires ``add_fit_arguments`` / ``run_fit`` into the ``paretorm`` console script. Defaults are the
ArmoRM recipe's (armorm.md §3); tests and small runs lower ``--steps``, ``--gate-batch-size`` and
``--gate-hidden-dim``. Input errors (``DataError``, bad options) print one line to stderr and return 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.fitting.reference import REFERENCE_ALPHAS, REFERENCE_CORR_THRESHOLD, REFERENCE_LAMBDA_GRID

if TYPE_CHECKING:
    from service.fitting.pipeline import FitConfig


def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    data = parser.add_argument_group("data")
    data.add_argument("--backbone", type=Path, required=True, help="causal-LM or base-model directory with tokenizer and chat template")
    data.add_argument("--ratings", type=Path, required=True, help="rating JSONL: {'messages': [...], 'ratings': {name: number|null}}")
    data.add_argument("--preferences", type=Path, required=True, help="preference JSONL: {'prompt', 'chosen', 'rejected'}")
    data.add_argument("--out", type=Path, required=True, help="output checkpoint directory (served by `paretorm serve --model DIR`)")
    data.add_argument("--objectives", nargs="+", default=None, help="objective names in head order (default: every rating key, first-seen order)")
    data.add_argument("--reference", type=Path, default=None, help="preference JSONL for the debiasing search (default: --preferences)")
    data.add_argument("--intra-pairs", type=Path, default=None, help="MAPL intra-sample JSONL: {'prompt_chosen', 'prompt_rejected', 'response'}")
    data.add_argument("--skip-bad-lines", action="store_true", help="skip malformed lines (counted in report.json) instead of failing")
    data.add_argument("--max-tokens", type=int, default=8192, help="skip conversations longer than this (reference: 8192); 0 = no limit")

    emb = parser.add_argument_group("embeddings")
    emb.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    emb.add_argument("--device", default="cpu")
    emb.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per backbone forward")
    emb.add_argument("--cache-dir", type=Path, default=None, help="embedding cache (default $PARETORM_CACHE_DIR/embeddings or ~/.cache/paretorm/embeddings)")
    emb.add_argument("--shard-size", type=int, default=1024, help="examples per cached shard (the resume granularity)")
    emb.add_argument("--gate-pattern", type=int, nargs="+", default=None, help="gate token ids (default: from config or derived from the chat template)")
    emb.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    s1 = parser.add_argument_group("stage 1 (ridge)")
    s1.add_argument("--alphas", type=float, nargs="+", default=list(REFERENCE_ALPHAS))
    s1.add_argument("--ridge-seed", type=int, default=42)
    s1.add_argument("--refit-on-all", action="store_true", help="refit each head on train+validation with the chosen alpha")

    db = parser.add_argument_group("debiasing")
    db.add_argument("--verbosity-objective", default=None, help="objective to decorrelate from (default helpsteer-verbosity if present; '' = off)")
    db.add_argument("--corr-threshold", type=float, default=REFERENCE_CORR_THRESHOLD)
    db.add_argument("--lambda-grid", type=float, nargs="+", default=list(REFERENCE_LAMBDA_GRID))

    s2 = parser.add_argument_group("stage 2 (gating)")
    s2.add_argument("--steps", type=int, default=2000)
    s2.add_argument("--gate-batch-size", type=int, default=1024, help="pairs per step, drawn with replacement")
    s2.add_argument("--lr", type=float, default=1e-3)
    s2.add_argument("--weight-decay", type=float, default=0.0)
    s2.add_argument("--temperature", type=float, default=10.0)
    s2.add_argument("--gate-hidden-dim", type=int, default=1024)
    s2.add_argument("--gate-n-hidden", type=int, default=3)
    s2.add_argument("--dropout", type=float, default=0.2)
    s2.add_argument("--intra-weight", type=float, default=1.0, help="weight of the MAPL intra-sample loss")
    s2.add_argument("--seed", type=int, default=0, help="stage-2 split and training seed")

    parser.add_argument("--max-shard-size", type=int, default=None, help="bytes per output safetensors shard")
    return parser


def config_from_args(args: argparse.Namespace) -> FitConfig:
    from service.fitting.gating_fit import GatingFitConfig  # torch: only once the arguments parse
    from service.fitting.pipeline import FitConfig
    from service.fitting.regression import RidgeConfig

    return FitConfig(
        backbone=args.backbone, ratings=args.ratings, preferences=args.preferences, out=args.out,
        objectives=tuple(args.objectives) if args.objectives else None,
        reference=args.reference, intra_pairs=args.intra_pairs,
        verbosity_objective=args.verbosity_objective, corr_threshold=args.corr_threshold,
        lambda_grid=tuple(args.lambda_grid),
        ridge=RidgeConfig(alphas=tuple(args.alphas), seed=args.ridge_seed, refit_on_all=args.refit_on_all),
        gating=GatingFitConfig(
            steps=args.steps, batch_size=args.gate_batch_size, lr=args.lr, weight_decay=args.weight_decay,
            temperature=args.temperature, hidden_dim=args.gate_hidden_dim, n_hidden=args.gate_n_hidden,
            dropout=args.dropout, intra_weight=args.intra_weight, seed=args.seed, device=args.device,
        ),
        dtype=args.dtype, device=args.device, batch_tokens=args.batch_tokens, shard_size=args.shard_size,
        max_tokens=args.max_tokens or None, cache_dir=args.cache_dir,
        gate_pattern=tuple(args.gate_pattern) if args.gate_pattern else None,
        skip_bad=args.skip_bad_lines, progress=not args.no_progress, max_shard_size=args.max_shard_size,
    )  # fmt: skip


def run_fit(args: argparse.Namespace) -> int:
    from service.fitting.inputs import check_inputs

    try:
        check_inputs(args.backbone, [args.ratings, args.preferences, args.reference, args.intra_pairs])
        from service.fitting.pipeline import run_fitting  # torch: only once the paths are there

        outcome = run_fitting(config_from_args(args))
    except ValueError as exc:  # DataError and CheckpointError too: each message says what to fix
        print(f"paretorm fit: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    summary = {
        "out": str(outcome.out),
        "val_accuracy": outcome.report["stage2"]["val_accuracy"],
        "stage1_val_pearson": {s["objective"]: s["val_pearson"] for s in outcome.report["stage1"]},
    }
    print(json.dumps(summary, indent=2))  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m service.fitting.cli``) until the lead wires ``paretorm fit``."""
    parser = add_fit_arguments(argparse.ArgumentParser(prog="paretorm fit", description=__doc__))
    return run_fit(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
