"""Pick the offline trainer for ``paretorm train modpo | mapl`` (a MODPO ``--sweep`` is several trainers)."""

from __future__ import annotations

from typing import Any

from service.training.distributed import World


def build_offline_trainer(algorithm: str, run: Any, cfg: Any, world: World) -> Any:
    """An object with ``train() -> Path``: `ModpoTrainer`, `ModpoSweep` or `MaplTrainer`."""
    if algorithm == "modpo":
        if cfg.sweep:
            from service.training.modpo_sweep import ModpoSweep

            return ModpoSweep(run, cfg, world)
        from service.training.modpo import ModpoTrainer

        return ModpoTrainer(run, cfg, world)
    from service.training.mapl import MaplTrainer

    return MaplTrainer(run, cfg, world)
