"""DPA (Wang et al., arXiv 2402.18571): directional preference alignment by rejection-sampling fine-tuning.

One round (a ``--steps`` step), as algorithms.md §5.3:
1. for each prompt draw an angle ``theta`` uniformly from ``--angle-range`` (degrees) and the direction
   ``v = (cos theta, sin theta)`` over the two ``--dpa-objectives``;
2. put ``v`` in DPA's system prompt (`service.objectives.render_dpa_system_prompt`, the service's own
   rendering) and sample K = ``--num-generations`` responses;
3. score each response (without the system prompt: the reward model judges the user's conversation) and
   keep ``argmax_y v . r(x, y)`` (the rejection-sampling pick);
4. SFT (NLL) on the winners, conditioned on the system prompt, for ``--sft-epochs``. Each winner's NLL is
   its token mean and winners weigh equally, so a long winner does not outvote a short one (with a plain
   token mean, long answers win every direction's SFT: measured on the tiny test policy).
After the last round the policy is evaluated along ``--sweep-angles`` on ``--eval-prompts`` (or the
training prompts): ``OUT/front.json`` and ``OUT/front.png`` hold the mean of both objectives per direction.
[unknown in the paper: K, the distribution of v, prompts per round, the learning rate; the uniform angle
draw is our reading of the README's |theta| <= 45 degrees advice.]
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from service.objectives import Direction, direction_from_angle, render_dpa_system_prompt
from service.training.config import DpaConfig, RunConfig
from service.training.data import PromptRow, read_prompts
from service.training.distributed import World
from service.training.loop import TrainerBase
from service.training.losses import rsf_select, sequence_mean
from service.training.sequences import build_batch, forward_logprobs


class DpaTrainer(TrainerBase):
    algorithm = "dpa"

    def __init__(self, run: RunConfig, cfg: DpaConfig, world: World) -> None:
        self.cfg = cfg
        self._directions: dict[int, Direction] = {}
        super().__init__(run, world)  # `preflight` checked that --dpa-objectives are among its rewards
        labels = cfg.labels or cfg.objectives
        self.labels = dict(zip(cfg.objectives, labels, strict=True))

    def direction(self, degrees: float) -> Direction:
        return direction_from_angle(degrees, self.cfg.objectives, degrees=True, objective_names=self.rewards.names)

    def system_prompt(self, row: PromptRow) -> str | None:
        direction = self._directions.get(id(row))
        return render_dpa_system_prompt(direction, self.labels) if direction is not None else None

    def train_step(self, step: int, rows: list[PromptRow]) -> dict[str, Any]:
        low, high = self.cfg.angle_range
        angles = np.random.default_rng([self.run.seed, step, self.world.rank]).uniform(low, high, len(rows))
        self._directions = {id(row): self.direction(float(a)) for row, a in zip(rows, angles, strict=True)}
        prompt_ids, completions, record = self.rollout(rows, self.run.num_generations, self.step_seed(step))
        rewards = self.score(rows, completions)
        record.update(self.reward_metrics(rewards))
        projected = np.stack([self._directions[id(row)].project(rewards.values[b]) for b, row in enumerate(rows)])
        best = rsf_select(torch.as_tensor(projected)).tolist()
        winners = [list(completions[b][k].token_ids) for b, k in enumerate(best)]
        record["reward"] = float(np.mean([projected[b, k] for b, k in enumerate(best)]))
        for name in self.cfg.objectives:
            chosen = rewards.objective(name)[np.arange(len(rows)), best]
            record[f"dpa/selected/{name}/mean"] = float(chosen.mean())
        record["dpa/angle/mean"] = float(angles.mean())
        started = time.perf_counter()
        record.update(self._sft(prompt_ids, winners, step))
        record["update_s"] = time.perf_counter() - started
        record["sync_s"] = self.finish_update()
        self._directions = {}
        return record

    def _sft(self, prompt_ids: list[list[int]], winners: list[list[int]], step: int) -> dict[str, float]:
        batch = build_batch(prompt_ids, winners, int(self.policy.tokenizer.pad_token_id)).to(self.run.device)
        losses = []
        generator = torch.Generator().manual_seed(self.step_seed(step))
        for _ in range(self.cfg.sft_epochs):
            for part in torch.randperm(len(batch), generator=generator).split(self.cfg.sft_batch_size):
                sub = batch.select(part)
                logp, _ = forward_logprobs(self.model, sub)
                loss = sequence_mean(-logp, sub.completion_mask)
                self.optimizer_step(loss)
                losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    def after_training(self) -> None:
        """The Pareto front: mean rewards of both objectives along each sweep direction."""
        source = self.run.eval_prompts or self.run.prompts
        rows = self.world.shard(read_prompts(source))
        n = max(self.run.eval_samples, 1)
        front = []
        for degrees in self.cfg.sweep_angles:
            self._directions = {id(row): self.direction(degrees) for row in rows}
            _, completions, _ = self.rollout(rows, n, seed=self.run.seed + 104729, greedy=self.run.eval_samples == 0)
            rewards = self.score(rows, completions)
            means = self.world.mean({name: float(rewards.objective(name).mean()) for name in self.cfg.objectives})
            front.append({"angle": degrees, **means})
        self._directions = {}
        if self.world.is_main:
            (self.run.out / "front.json").write_text(json.dumps({"prompts": str(source), "front": front}, indent=2))
            _plot_front(front, self.cfg.objectives, self.run.out / "front.png")


def _plot_front(front: list[dict[str, float]], names: tuple[str, str], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(4.2, 3.6))
    xs, ys = [p[names[0]] for p in front], [p[names[1]] for p in front]
    axis.plot(xs, ys, marker="o")
    for point, x, y in zip(front, xs, ys, strict=True):
        axis.annotate(f"{point['angle']:g}°", (x, y), fontsize=8, textcoords="offset points", xytext=(4, 4))
    axis.set_xlabel(names[0])
    axis.set_ylabel(names[1])
    axis.set_title("DPA: mean rewards per direction", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
