"""CGPO's per-prompt baseline responses: given in the prompts file, or the initial policy's greedy answer.

algorithms.md §6.2 allows the SFT golden answer or a pre-generated sample of pi_ref. A prompts line may
carry ``"baseline": "..."``; prompts without one get the *untrained* policy's greedy answer, generated once
before step 1. Every baseline is written to ``OUT/cgpo_baselines.json`` so that ``--resume`` calibrates
against the same answers (the policy it resumes with is no longer the initial one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from service.training.config import ConfigError

CACHE = "cgpo_baselines.json"


def read_baselines(path: Path) -> list[str | None]:
    """The ``baseline`` of every prompt line (None where absent), aligned with `data.read_prompts`."""
    out: list[str | None] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        value = json.loads(line).get("baseline")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}:{number}: 'baseline' must be a string (the baseline response)")
        out.append(value)
    return out


def resolve_baselines(
    prompts: Path, out: Path, *, resume: bool, generate: Callable[[list[int]], list[str]], write: bool = True
) -> tuple[list[str], int]:
    """Every prompt's baseline and how many were generated; ``generate(indices)`` answers those prompts.

    On ``resume`` the cache under ``out`` is read (and must match the prompts file); otherwise missing
    baselines are generated and the cache is (re)written.
    """
    given = read_baselines(prompts)
    cache = Path(out) / CACHE
    if resume:
        if not cache.is_file():
            raise ConfigError(
                f"--resume: {cache} is missing; the run's baselines cannot be recovered, start anew"
            )
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if len(saved["baselines"]) != len(given):
            raise ConfigError(f"--resume: {cache} holds {len(saved['baselines'])} baselines but --prompts has "
                              f"{len(given)} prompts; resume with the same prompts file")  # fmt: skip
        return list(saved["baselines"]), int(saved["generated"])
    missing = [i for i, b in enumerate(given) if b is None]
    answers = dict(zip(missing, generate(missing), strict=True)) if missing else {}
    baselines = [answers[i] if b is None else b for i, b in enumerate(given)]
    if write:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"generated": len(missing), "baselines": baselines}, indent=1))
    return baselines, len(missing)
