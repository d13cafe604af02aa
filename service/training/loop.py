"""The loop every trainer shares: set-up, resume, roll out, score, update, log, checkpoint, export.

An algorithm subclasses `TrainerBase` and writes one method, ``train_step(step, rows) -> metrics``, using
the helpers here (`rollout`, `score`, `optimizer_step`, `reward_metrics`). Everything else — where the
policy comes from, the reference model, the rollout engine and its weight sync, the reward client, the
data cursor, checkpoints, ``--resume``, metrics, evaluation before/after, the final export — lives here
once.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clients import RewardClient
from service.training.checkpoint import load_checkpoint, save_checkpoint
from service.training.config import ConfigError, RunConfig
from service.training.data import Messages, PromptCursor, PromptRow, read_prompts
from service.training.distributed import World, weights_digest
from service.training.fsdp import (
    full_model_state,
    full_optimizer_state,
    load_full_optimizer_state,
    local_parameters,
    whole,
)
from service.training.metrics import MetricsLog, plot_metrics
from service.training.policy import load_policy, load_trainable, resolve_policy_dir, save_policy
from service.training.rewards import Rewards, RewardSource
from service.training.rollout import Completion, RolloutEngine, Sampling, build_rollout
from service.training.rule_rewards import parse_rules
from service.training.sequences import SequenceBatch, build_batch

logger = logging.getLogger(__name__)


class TrainerBase:
    """Owns the run's heavy objects; subclasses implement ``train_step``."""

    algorithm = "base"
    needs_reference = False
    rollout_during_training = True
    """False for offline trainers (MODPO, MAPL): the rollout engine is built on first use (evaluation)."""
    uneven_backwards = False
    """True where ranks may run different numbers of forwards and backwards in a step (CGPO's tasks): the
    bare module is trained, not DDP's wrapper, and `optimizer_step` averages the gradients over ranks."""

    def __init__(self, run: RunConfig, world: World) -> None:
        self.run, self.world = run, world
        self.rules = parse_rules(run.rule_rewards)
        self.prompts = self.load_data()
        self.cursor = PromptCursor(len(self.prompts), run.seed)
        client = RewardClient(run.reward_url, api_key=run.api_key) if run.reward_url else None
        self.rewards = RewardSource(client, self.rules, outage_timeout_s=run.outage_timeout_s,
                                    on_wait=lambda status: self.metrics.status(status))  # fmt: skip
        self.source = source = resolve_policy_dir(run.policy, run.cache_dir)
        resumed = load_checkpoint(run.out) if run.resume else None
        self.start_step = resumed.step if resumed else 0
        # under FSDP the whole model is read into host memory; sharding moves each rank's part to the device
        self.load_device = "cpu" if world.fsdp else run.device
        self.policy = load_trainable(source, resumed.policy_dir if resumed else None, self.load_device, run.lora,
                                     run.seed)  # fmt: skip
        self.policy.model.train()
        self.reference = self._reference(source) if self.needs_reference else None
        self.extra = self.build_extra_modules()
        self.model = self.trainable() if self.uneven_backwards else world.wrap(self.trainable())
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=run.learning_rate,
            weight_decay=run.weight_decay,
        )  # fmt: skip
        warmup = max(run.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        if resumed:
            self._restore(resumed.trainer, resumed.state)
        self.metrics = MetricsLog(run.out / "metrics.jsonl", total=run.steps, start=self.start_step,
                                  enabled=world.is_main, progress=run.progress, tensorboard=run.tensorboard)  # fmt: skip
        self._engine: RolloutEngine | None = None
        if self.rollout_during_training:
            self._engine = self._build_engine()

    @property
    def engine(self) -> RolloutEngine:
        """The rollout engine; offline trainers build it on first use (evaluation), synced to the policy."""
        if self._engine is None:
            self._engine = self._build_engine()
        return self._engine

    def _build_engine(self) -> RolloutEngine:
        run = self.run
        engine = build_rollout(
            run.rollout, self.policy, dtype=run.rollout_dtype, seed=run.seed + self.world.rank,
            max_model_len=run.max_prompt_tokens + run.max_new_tokens + 8, sync_dir=run.out / ".rollout-weights",
            tensor_parallel_size=run.rollout_tensor_parallel_size, sharded_policy=self.world.fsdp,
            torch_threads=run.torch_threads,
        )  # fmt: skip
        engine.sync(self.policy)  # start and resume alike: the engine must sample from these weights
        return engine

    # -- hooks for algorithms ----------------------------------------------------------------------

    def load_data(self) -> list[Any]:
        """The rows the cursor walks (``--prompts``); offline trainers read preference pairs instead."""
        return read_prompts(self.run.prompts)

    def build_extra_modules(self) -> nn.ModuleDict:
        """Modules trained beside the policy (PAMA's value heads); checkpointed with it."""
        return nn.ModuleDict()

    def trainable(self) -> nn.Module:
        return self.policy.model

    def train_step(self, step: int, rows: list[PromptRow]) -> dict[str, Any]:
        raise NotImplementedError

    def system_prompt(self, row: PromptRow) -> str | None:
        return None

    def after_training(self) -> None:
        """Algorithm-specific work once the final policy is exported (DPA's Pareto-front sweep)."""

    # -- the loop -----------------------------------------------------------------------------------

    def train(self) -> Path:
        run = self.run
        if self.start_step == 0 and run.eval_prompts is not None:
            self.evaluate("before")
        for step in range(self.start_step + 1, run.steps + 1):
            rows = self.world.shard([self.prompts[i] for i in self.cursor.take(run.prompts_per_step)])
            started = time.perf_counter()
            record = self.world.mean(self.train_step(step, rows))
            record["step_s"] = time.perf_counter() - started
            record["lr"] = self.scheduler.get_last_lr()[0]
            self.metrics.log({"step": step, **record})
            if (run.save_every and step % run.save_every == 0) or step == run.steps:
                self.checkpoint(step)
        self.metrics.close()
        final = self.export()
        if run.eval_prompts is not None:
            self.evaluate("after")
        self.after_training()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        return final

    def checkpoint(self, step: int) -> None:
        weights, optimizer = self._whole_states()
        if self.world.is_main:
            trainer = {"optimizer": optimizer, "scheduler": self.scheduler.state_dict(),
                       "extra": self.extra.state_dict()}  # fmt: skip
            state = {"cursor": self.cursor.state(), "algorithm": self.algorithm, "policy_source": self.run.policy,
                     "reward_revision": self.rewards.revision, "fsdp": self.world.fsdp}  # fmt: skip
            save_checkpoint(self.run.out, step, self.policy, trainer, state, weights)
        self.world.barrier()

    def _whole_states(self) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
        """The policy's weights and the optimiser state as rank 0 writes them.

        Plain and DDP runs read them from rank 0's own copy (``None``: from the policy). FSDP gathers the
        shards on every rank (collectives) into rank 0's host memory; the optimiser state comes keyed by
        parameter name, the form `load_full_optimizer_state` cuts back into shards.
        """
        if not self.world.fsdp:
            return None, self.optimizer.state_dict()
        return full_model_state(self.policy.model), full_optimizer_state(self.model, self.optimizer)

    def _restore(self, trainer: dict[str, Any], state: dict[str, Any]) -> None:
        if state.get("algorithm") != self.algorithm:
            raise ValueError(f"--resume: the checkpoint is a {state.get('algorithm')} run, not {self.algorithm}")
        if bool(state.get("fsdp", False)) != self.world.fsdp:
            raise ConfigError(f"--resume: the checkpoint was written {'with' if state.get('fsdp') else 'without'} "
                              f"--fsdp (its optimiser state is laid out for that); resume the same way")  # fmt: skip
        if self.world.fsdp:
            load_full_optimizer_state(self.model, self.optimizer, trainer["optimizer"])
        else:
            self.optimizer.load_state_dict(trainer["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        self.extra.load_state_dict(trainer["extra"])
        self.cursor.restore(state["cursor"])

    def export(self) -> Path:
        final = self.run.out / "final"
        digests = self.world.gather(weights_digest(self.policy.model))  # equal on every rank under DDP
        held = self.world.gather(str(local_parameters(self.policy.model)))  # FSDP: each rank about 1/N
        weights = full_model_state(self.policy.model) if self.world.fsdp else None  # rank 0: whole, on CPU
        if self.world.is_main:
            save_policy(self.policy, final, state=weights)
            parallel = "fsdp" if self.world.fsdp else "ddp" if self.world.active else "none"
            (final / "paretorm_training.json").write_text(json.dumps(
                {"algorithm": self.algorithm, "steps": self.run.steps, "policy_source": self.run.policy,
                 "reward_revision": self.rewards.revision, "objectives": list(self.rewards.names),
                 "world_size": self.world.size, "parallel": parallel, "rank_weight_digests": digests,
                 "rank_local_parameters": [int(n) for n in held]}, indent=2))  # fmt: skip
            if self.run.plot:
                plot_metrics(self.run.out / "metrics.jsonl", self.run.out / "rewards.png",
                             title=f"paretorm train {self.algorithm}")  # fmt: skip
        self.world.barrier()
        return final

    def _reference(self, source: Path) -> nn.Module:
        reference = load_policy(source, self.load_device).model
        reference.eval().requires_grad_(False)
        return self.world.wrap_frozen(reference)

    # -- helpers ------------------------------------------------------------------------------------

    def messages(self, row: PromptRow) -> Messages:
        return row.as_messages(self.system_prompt(row))

    def step_seed(self, step: int) -> int:
        return (self.run.seed * 1_000_003 + step * 1009 + self.world.rank) % (2**31 - 1)

    def rollout(
        self, rows: list[PromptRow], n: int, seed: int, *, greedy: bool = False
    ) -> tuple[list[list[int]], list[list[Completion]], dict[str, float]]:
        """Prompt ids, ``n`` completions per prompt, and timing metrics (tokens/s under ``rollout/``)."""
        run = self.run
        prompt_ids = [self.policy.render(self.messages(r), run.max_prompt_tokens) for r in rows]
        started = time.perf_counter()
        sampling = Sampling(run.max_new_tokens, run.temperature, run.top_p, greedy)
        completions = self.engine.generate(prompt_ids, n, sampling, seed)
        seconds = time.perf_counter() - started
        tokens = sum(len(c.token_ids) for group in completions for c in group)
        return prompt_ids, completions, {"rollout_s": seconds, "tokens_generated": float(tokens),
                                         "rollout/tokens_per_s": tokens / max(seconds, 1e-9)}  # fmt: skip

    def score(self, rows: list[PromptRow], completions: list[list[Completion]]) -> Rewards:
        """Rewards are computed on the prompt *without* the DPA system prompt: the user's conversation."""
        texts = [[c.text for c in group] for group in completions]
        lengths = [[len(c.token_ids) for c in group] for group in completions]
        return self.rewards.score([r.as_messages() for r in rows], texts, lengths)

    def flat_batch(self, prompt_ids: list[list[int]], completions: list[list[Completion]]) -> SequenceBatch:
        prompts = [p for p, group in zip(prompt_ids, completions, strict=True) for _ in group]
        flat = [list(c.token_ids) for group in completions for c in group]
        return build_batch(prompts, flat, int(self.policy.tokenizer.pad_token_id)).to(self.run.device)

    def optimizer_step(self, loss: torch.Tensor | None) -> float:
        """Backward (``None``: the gradients are already accumulated), clip, step, zero; the norm before clipping."""
        if loss is not None:
            loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.uneven_backwards:
            self.world.average_gradients(params)
        norm = torch.nn.utils.clip_grad_norm_(params, self.run.max_grad_norm or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(whole(norm))  # FSDP: a DTensor, the norm over every rank's shard

    def finish_update(self) -> float:
        """After the step's updates: schedule, and push the new weights to the rollout engine."""
        self.scheduler.step()
        return self.engine.sync(self.policy)

    @staticmethod
    def reward_metrics(rewards: Rewards) -> dict[str, float]:
        record: dict[str, float] = {}
        for k, name in enumerate(rewards.names):
            column = rewards.values[..., k]
            record[f"rewards/{name}/mean"] = float(column.mean())
            record[f"rewards/{name}/std"] = float(column.std())
        if not np.isnan(rewards.gated).all():
            record["rewards/gated_score/mean"] = float(rewards.gated.mean())
        return record

    def evaluate(self, when: str) -> dict[str, Any]:
        """Per-objective mean rewards on ``--eval-prompts`` (greedy, or ``--eval-samples`` seeded samples)."""
        rows = self.world.shard(read_prompts(self.run.eval_prompts))
        if not self.rollout_during_training and self._engine is not None:
            self._engine.sync(self.policy)  # offline training moved the weights without syncing
        n = max(self.run.eval_samples, 1)
        _, completions, _ = self.rollout(rows, n, seed=self.run.seed + 7919, greedy=self.run.eval_samples == 0)
        rewards = self.score(rows, completions)
        record = {"when": when, "step": self.start_step if when == "before" else self.run.steps,
                  **self.world.mean(self.reward_metrics(rewards))}  # fmt: skip
        if self.world.is_main:
            with (self.run.out / "eval.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record
