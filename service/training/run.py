"""Start one training run: the process group (under torchrun), the algorithm's trainer, and clean exits.

A run that cannot go on for a reason the user can fix (a setting, a 4xx from the reward service, an
outage longer than ``--outage-timeout-s``) ends with exit status 2 and one line saying why, not a traceback.
Flags the reward service must know are checked first, before torch is imported (`preflight`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.training.config import ConfigError, RunConfig
from service.training.preflight import preflight
from service.training.rewards import RewardStop

if TYPE_CHECKING:
    from service.training.loop import TrainerBase

logger = logging.getLogger(__name__)


def build_trainer(algorithm: str, run: RunConfig, cfg: Any, world: Any) -> TrainerBase:
    if algorithm == "grpo":
        from service.training.grpo import GrpoTrainer

        return GrpoTrainer(run, cfg, world)
    if algorithm == "pama":
        from service.training.noon_ppo import NoonPpoTrainer

        return NoonPpoTrainer(run, cfg, world)
    if algorithm == "dpa":
        from service.training.dpa import DpaTrainer

        return DpaTrainer(run, cfg, world)
    if algorithm == "cgpo":
        from service.training.cgpo import CgpoTrainer

        return CgpoTrainer(run, cfg, world)
    if algorithm in ("modpo", "mapl"):
        from service.training.offline_run import build_offline_trainer

        return build_offline_trainer(algorithm, run, cfg, world)
    raise ConfigError(f"unknown algorithm {algorithm!r}")


def run_training(algorithm: str, run: RunConfig, cfg: Any) -> int:
    try:
        preflight(run, cfg)
        final, is_main = _train(algorithm, run, cfg)
    except (ConfigError, RewardStop) as error:
        print(f"paretorm train {algorithm}: {error}", file=sys.stderr)
        return 2
    if is_main:
        print(f"paretorm train {algorithm}: done; the trained policy is in {final}")
    return 0


def _train(algorithm: str, run: RunConfig, cfg: Any) -> tuple[Path, bool]:
    """The run itself (torch from here on): the trained policy's directory, and whether this is rank 0."""
    from service.cpu_budget import apply_torch_threads
    from service.gc_freeze import freeze_startup_heap
    from service.training.distributed import close_world, init_world

    logger.info("torch threads: %s", apply_torch_threads(run.torch_threads))
    world = init_world(run.device, fsdp=run.fsdp)
    try:
        final = build_trainer(algorithm, run, cfg, world).train()
    finally:
        close_world(world)
    freeze_startup_heap()  # the trainer and its rollout engine are gone: exit without walking the rest
    return final, world.is_main
