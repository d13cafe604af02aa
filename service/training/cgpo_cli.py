"""`paretorm train cgpo`'s own flags (torch-free; `cli.py` adds the flags every algorithm shares)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.training.cgpo_config import OPTIMIZERS, parse_judge_flag
from service.training.config import ConfigError


def _judge(text: str) -> dict[str, Any]:
    try:
        return parse_judge_flag(text)
    except ConfigError as error:  # argparse shows an ArgumentTypeError's message as it is
        raise argparse.ArgumentTypeError(str(error)) from None


def add_cgpo_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--tasks", dest="tasks_file", type=Path,
        help='JSON {"TASK": {"judges": [{"name", "args"}], "reward", "k", "kl_max", "optimizer", "weight"}}; '
        "prompts pick a task by their 'task' field (untagged: 'default')")  # fmt: skip
    add("--judge", dest="judges", type=_judge, action="append", default=[],
        help='single-task form: a judge NAME or NAME:JSON-ARGS, e.g. word_count:{"max": 8} (repeatable)')  # fmt: skip
    add("--reward", default="score", help="objective calibrated against the baseline ('score': the gated score)")
    add("--optimizer", choices=list(OPTIMIZERS), default="crpg", help="crpg | crraft | codpo (single-task form)")
    add("--kl-max", type=float, default=10.0, help="sequence-level KL budget in nats (CRPG factor, CRRAFT drop)")
    add("--beta", type=float, default=0.1, help="CODPO's DPO beta")
    add("--nll-coef", type=float, default=5.0, help="CODPO's lambda on the chosen answer's length-normalised NLL")
