"""CGPO's settings: the tasks (judges, reward, K, KL_max, optimiser, weight) and the optimisers' knobs.

Torch-free, like `config.py`, so ``paretorm train cgpo --help`` and a bad ``--tasks`` file fail at once.
Two ways to say what to train (algorithms.md §6.6):

- the single-task flags: ``--judge NAME[:JSON]`` (repeatable), ``--reward``, ``--optimizer``, ``--kl-max``
  (K is ``--num-generations``); every prompt is in that one task, named ``default``;
- ``--tasks tasks.json``: a JSON object mapping a task name (the prompts' ``task`` field; ``default`` takes
  untagged prompts) to ``{"judges": [{"name", "args", "label"?}], "reward", "k", "kl_max", "optimizer",
  "weight"}``; every key but ``judges`` may be left out and then takes the flag's value.

Judge names and arguments are checked against the service's judges by `preflight`, before the trainer
loads anything (it needs the service for that); here only the shape of the file is checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.training.config import ConfigError
from service.training.data import PromptRow

Optimizer = Literal["crpg", "crraft", "codpo"]
OPTIMIZERS: tuple[str, ...] = ("crpg", "crraft", "codpo")
DEFAULT_TASK = "default"
_TASK_KEYS = {"judges", "reward", "k", "kl_max", "optimizer", "weight"}


@dataclass(frozen=True)
class JudgeUse:
    """One judge of a task: the wire spec (``name``, ``args``) and the ``label`` its metrics are logged under."""

    name: str
    args: dict[str, Any]
    label: str

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args}


@dataclass(frozen=True)
class TaskSpec:
    """One CGPO task (Algorithm 2's D_l): its judges, reward objective, K, KL_max, optimiser and weight rho_l."""

    name: str
    judges: tuple[JudgeUse, ...]
    reward: str
    k: int
    kl_max: float
    optimizer: Optimizer
    weight: float


def parse_judge_flag(text: str) -> dict[str, Any]:
    """``word_count:{"max": 8}`` or ``all_lowercase`` -> a judge spec dict (the ``--judge`` flag)."""
    name, sep, args = text.partition(":")
    if not name.strip():
        raise ConfigError(f'--judge {text!r}: write NAME or NAME:JSON-ARGS, e.g. word_count:{{"max": 8}}')
    if not sep:
        return {"name": name.strip(), "args": {}}
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--judge {text!r}: the args after ':' are not JSON ({error.msg})") from None
    return {"name": name.strip(), "args": parsed}


def _judges(raw: Any, where: str) -> tuple[JudgeUse, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f'{where}: \'judges\' must be a non-empty list of {{"name": ..., "args": {{...}}}}')
    uses, seen = [], set()
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ConfigError(f"{where}: judges[{i}] needs a 'name' (see GET /v1/judges)")
        extra = set(spec) - {"name", "args", "label"}
        if extra:
            raise ConfigError(f"{where}: judges[{i}] has unknown keys {sorted(extra)}; use name, args, label")
        args = spec.get("args", {})
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: judges[{i}].args must be a JSON object")
        label = str(spec.get("label") or spec["name"])
        if label in seen:
            raise ConfigError(f"{where}: two judges are labelled {label!r}; give each a distinct 'label'")
        seen.add(label)
        uses.append(JudgeUse(spec["name"], args, label))
    return tuple(uses)


def _task(name: str, raw: dict[str, Any], defaults: CgpoConfig, where: str) -> TaskSpec:
    unknown = set(raw) - _TASK_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; a task has {sorted(_TASK_KEYS)}")
    k, kl_max = raw.get("k", defaults.k), raw.get("kl_max", defaults.kl_max)
    optimizer, weight = raw.get("optimizer", defaults.optimizer), raw.get("weight", 1.0)
    reward = raw.get("reward", defaults.reward)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{where}: 'k' must be an integer >= 1 (got {k!r})")
    if optimizer in ("crraft", "codpo") and k < 2:
        raise ConfigError(f"{where}: {optimizer} picks among the K samples of a prompt; give 'k' >= 2")
    for key, value in (("kl_max", kl_max), ("weight", weight)):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{where}: '{key}' must be a finite number > 0 (got {value!r})")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"{where}: 'optimizer' {optimizer!r} is not one of {list(OPTIMIZERS)}")
    if not isinstance(reward, str) or not reward:
        raise ConfigError(f"{where}: 'reward' must be an objective name or 'score' (the gated score)")
    return TaskSpec(
        name, _judges(raw.get("judges"), where), reward, k, float(kl_max), optimizer, float(weight)
    )


def read_tasks(path: Path, defaults: CgpoConfig) -> tuple[TaskSpec, ...]:
    """The tasks of a ``--tasks`` JSON file (see the module docstring); errors name the task and key."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--tasks {path}: no such file") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"--tasks {path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f'--tasks {path}: expected an object {{"TASK": {{"judges": [...], ...}}, ...}}')
    tasks = []
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"--tasks {path}: task {name!r} must be an object with 'judges'")
        tasks.append(_task(name, spec, defaults, f"--tasks {path}: task {name!r}"))
    return tuple(tasks)


@dataclass
class CgpoConfig:
    """CGPO (algorithms.md §6): the single-task flags, or ``--tasks``; and the optimisers' coefficients."""

    tasks_file: Path | None = None
    judges: list[dict[str, Any]] = field(default_factory=list)
    """The single task's judges (``--judge``), when there is no ``--tasks`` file."""
    reward: str = "score"
    """The objective calibrated against the baseline ('score': the service's gated score)."""
    optimizer: Optimizer = "crpg"
    kl_max: float = 10.0
    """Sequence-level KL budget (nats) of CRPG's KL factor and CRRAFT's over-KL drop."""
    k: int = 4
    """Samples per prompt of the single task; the CLI fills it from ``--num-generations``."""
    beta: float = 0.1
    """CODPO's DPO temperature (the TRL draft's default)."""
    nll_coef: float = 5.0
    """CODPO's lambda on the chosen answer's length-normalised NLL (the TRL draft's default)."""
    tasks: tuple[TaskSpec, ...] = ()

    def __post_init__(self) -> None:
        for name in ("kl_max", "beta"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number > 0 (got {value!r})")
        if not math.isfinite(self.nll_coef) or self.nll_coef < 0:
            raise ConfigError(f"--nll-coef must be a finite number >= 0 (got {self.nll_coef!r})")
        if self.tasks:
            return
        if self.tasks_file is not None:
            if self.judges:
                raise ConfigError("give --tasks FILE or --judge flags, not both (put the judges in the file)")
            self.tasks = read_tasks(self.tasks_file, self)
        elif not self.judges:
            raise ConfigError('cgpo needs judges: --judge NAME[:JSON] (e.g. --judge word_count:{"max": 8}) or '
                              "--tasks tasks.json (see the README)")  # fmt: skip
        else:
            spec = {"judges": self.judges, "reward": self.reward, "k": self.k, "kl_max": self.kl_max,
                    "optimizer": self.optimizer}  # fmt: skip
            self.tasks = (_task(DEFAULT_TASK, spec, self, "--judge"),)

    def task_for(self, tag: str | None) -> TaskSpec | None:
        """The task a prompt tagged ``tag`` belongs to (untagged: ``default``; single-task form: always it)."""
        if self.tasks_file is None:
            return self.tasks[0]
        wanted = tag or DEFAULT_TASK
        return next((t for t in self.tasks if t.name == wanted), None)


def assign_tasks(cfg: CgpoConfig, rows: Sequence[PromptRow], flag: str) -> list[TaskSpec]:
    """Each row's task; prompts tagged with a task the config lacks stop the run before any work."""
    tasks = [cfg.task_for(row.task) for row in rows]
    lost = sorted({row.task or DEFAULT_TASK for row, task in zip(rows, tasks, strict=True) if task is None})
    if lost:
        defined = [t.name for t in cfg.tasks]
        raise ConfigError(f"{flag}: prompts are tagged with tasks {lost} that --tasks does not define "
                          f"(it has {defined}; untagged prompts go to 'default')")
    return tasks  # type: ignore[return-value]
