"""Flags of ``paretorm train modpo`` and ``paretorm train mapl`` (argument parsing only: no torch)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write comma-separated numbers, e.g. 0.2,0.5,0.8") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(n for n in text.split(",") if n)


def _offline_common(add: Callable[..., Any]) -> None:
    add("--beta", type=float, default=0.1, help="DPO's beta (KL strength to the reference = the initial policy)")
    add("--max-response-tokens", type=int, default=256, help="responses are cut to this many tokens")
    add("--micro-batch-sequences", type=int, default=16, help="sequences per forward and backward; a step's "
        "gradient accumulates over micro-batches of whole pairs/examples (memory grows with this, not with "
        "--prompts-per-step)")


def add_modpo_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--objective", help="the objective the preference file (--prompts/--pairs) ranks; weigh it in --weights")
    _offline_common(add)
    add("--sweep", type=_numbers, default=(), help="w_k values W1,W2,...: one model per value (the other "
        "weights rescaled to 1 - w_k), then the front on --eval-prompts in OUT/front.json and front.png")
    add("--front-objectives", type=_names, default=(), help="the two objectives front.png draws "
        "(default: --objective and the first margin objective)")
    add("--margin-cache", type=Path, help="margin-reward cache (default OUT/margin_cache.json), keyed by the "
        "service's model revision")


def add_mapl_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    _offline_common(add)
    add("--intra-weight", type=float, default=1.0, help="weight of MAPL's intra-sample loss (same response, "
        "two prompts); 0: plain DPO on the original pairs")
    add("--inter-weight", type=float, default=0.0, help="[our reading] weight of the inter-sample loss: the "
        "margin under prompt_more should exceed the margin under prompt_fewer (0: off)")
    add("--eval-pairs", type=Path, help="held-out augmented JSONL: implicit-reward accuracy before/after "
        "(OUT/eval_pairs.jsonl)")
