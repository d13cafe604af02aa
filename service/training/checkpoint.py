"""Checkpoints that really resume: policy, optimiser, scheduler, extra modules, RNG, step and data cursor.

Layout: ``OUT/checkpoints/step-000010/`` holding ``policy/`` (a HF causal-LM directory, loadable on its
own; with LoRA only the peft adapter, whose base is the run's ``--policy``), ``trainer.pt`` (optimiser,
scheduler, extra module states such as PAMA's value heads, torch RNG; read back with ``weights_only=True``: no pickle) and ``state.json`` (step, cursor, Python RNG, the reward
model revision). A checkpoint is written to a staging folder and renamed into place, so a run killed while
saving leaves the previous checkpoint intact; the newest complete one is what ``--resume`` reads. Under ``--fsdp``
the layout is the same, written by rank 0 from whole states gathered off the shards (the optimiser's keyed
by parameter name; `service.training.fsdp`), and read back by every rank.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.training.config import ConfigError
from service.training.policy import Policy, save_trainable

KEEP = 2
"""Checkpoints kept (older ones are deleted once a newer one is complete)."""


@dataclass
class Resumed:
    step: int
    policy_dir: Path
    trainer: dict[str, Any]
    state: dict[str, Any]


def checkpoint_root(out: Path) -> Path:
    return out / "checkpoints"


def save_checkpoint(
    out: Path, step: int, policy: Policy, trainer: dict[str, Any], state: dict[str, Any],
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """``weights``: the policy's whole weights when they were gathered beforehand (FSDP), else read from it."""
    root = checkpoint_root(out)
    target = root / f"step-{step:06d}"
    staging = root / f".staging-{step:06d}"
    shutil.rmtree(staging, ignore_errors=True)
    save_trainable(policy, staging / "policy", weights)
    torch.save({**trainer, "torch_rng": torch.get_rng_state()}, staging / "trainer.pt")
    full_state = {**state, "step": step, "python_rng": _jsonable(random.getstate())}
    (staging / "state.json").write_text(json.dumps(full_state, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(out: Path) -> Path | None:
    complete = [p for p in sorted(checkpoint_root(out).glob("step-*")) if (p / "state.json").is_file()]
    return complete[-1] if complete else None


def load_checkpoint(out: Path) -> Resumed:
    """The newest complete checkpoint under ``out``, with the RNG states restored."""
    path = latest_checkpoint(out)
    if path is None:
        raise ConfigError(f"--resume: no checkpoint under {checkpoint_root(out)}; run without --resume first")
    trainer = torch.load(path / "trainer.pt", weights_only=True)
    state = json.loads((path / "state.json").read_text())
    torch.set_rng_state(trainer.pop("torch_rng"))
    random.setstate(_tupled(state["python_rng"]))
    return Resumed(int(state["step"]), path / "policy", trainer, state)


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
