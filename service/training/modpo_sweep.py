"""``paretorm train modpo --sweep w1,w2,...``: one MODPO model per trained-objective weight, and their front.

Member ``w`` trains in ``OUT/w-<w>/`` with ``w_k = w`` and the other weights rescaled to ``1 - w``
(`offline_config.sweep_weights`), from the same initial policy. Members share the margin cache and the
reference log-probs (both in ``OUT``), so the service scores each pair once for the whole sweep. A member
whose ``final/`` is complete is skipped; with ``--resume`` a member with a checkpoint continues from it.

The front: every member's final policy (and the initial one, ``w = null``) answers ``--eval-prompts``
(greedy, or ``--eval-samples`` seeded samples; without eval prompts, the training pairs' prompts) and the
service and rule rewards score the answers. ``OUT/front.json`` holds every objective's mean per point,
``OUT/front.png`` draws two of them (``--front-objectives``).
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from clients import RewardClient
from service.preference.data import read_preferences
from service.training.checkpoint import latest_checkpoint
from service.training.config import RunConfig
from service.training.data import PromptRow, read_prompts
from service.training.distributed import World
from service.training.modpo import ModpoTrainer
from service.training.offline_config import ModpoConfig, sweep_weights
from service.training.policy import load_policy, resolve_policy_dir
from service.training.rewards import RewardSource
from service.training.rollout import Sampling, build_rollout
from service.training.rule_rewards import parse_rules

logger = logging.getLogger(__name__)


class ModpoSweep:
    """Trains the members one after another, then evaluates them all through one rollout engine."""

    algorithm = "modpo"

    def __init__(self, run: RunConfig, cfg: ModpoConfig, world: World) -> None:
        self.run, self.cfg, self.world = run, cfg, world
        self.member_cfg = replace(cfg, sweep=(), margin_cache=cfg.margin_cache or run.out / "margin_cache.json",
                                  cache_root=run.out)  # fmt: skip

    def member_run(self, w: float) -> RunConfig:
        out = self.run.out / f"w-{w:g}"
        weights = sweep_weights(self.run.weights, str(self.cfg.objective), w)
        resume = self.run.resume and latest_checkpoint(out) is not None
        return replace(self.run, out=out, weights=weights, eval_prompts=None, resume=resume)

    def train(self) -> Path:
        finals: list[tuple[float, Path, dict[str, float]]] = []
        for w in self.cfg.sweep:
            member = self.member_run(w)
            final = member.out / "final"
            if (final / "paretorm_training.json").is_file():
                logger.info("sweep member w=%g is complete in %s; not training it again", w, final)
            else:
                trainer = ModpoTrainer(member, self.member_cfg, self.world)
                trainer.train()
                del trainer
                gc.collect()
            finals.append((w, final, member.weights))
        front = self.front(finals)
        if self.world.is_main:
            (self.run.out / "front.json").write_text(json.dumps(front, indent=2))
            names = self.front_names(front["objectives"])
            plot_front(front["points"], names, self.run.out / "front.png", str(self.cfg.objective))
        self.world.barrier()
        return self.run.out

    def front_names(self, objectives: list[str]) -> tuple[str, str]:
        if len(self.cfg.front_objectives) == 2:
            return self.cfg.front_objectives[0], self.cfg.front_objectives[1]
        wanted = [str(self.cfg.objective), *[n for n in self.run.weights if n != self.cfg.objective]]
        known = [n for n in wanted if n in objectives] + [n for n in objectives if n not in wanted]
        return known[0], known[1]

    def eval_rows(self) -> list[PromptRow]:
        if self.run.eval_prompts is not None:
            return read_prompts(self.run.eval_prompts)
        seen = {json.dumps(p.chosen[:-1]): p.chosen[:-1] for p in read_preferences(self.run.prompts).pairs}
        return [PromptRow(tuple((m["role"], m["content"]) for m in prompt)) for prompt in seen.values()]

    def front(self, finals: list[tuple[float, Path, dict[str, float]]]) -> dict[str, Any]:
        run = self.run
        source = resolve_policy_dir(run.policy, run.cache_dir)
        client = RewardClient(run.reward_url, api_key=run.api_key) if run.reward_url else None
        rewards = RewardSource(client, parse_rules(run.rule_rewards), outage_timeout_s=run.outage_timeout_s)
        policy = load_policy(source, run.device)
        engine = build_rollout(run.rollout, policy, dtype=run.rollout_dtype, seed=run.seed + self.world.rank,
                               max_model_len=run.max_prompt_tokens + run.max_new_tokens + 8,
                               sync_dir=run.out / ".rollout-weights",
                               tensor_parallel_size=run.rollout_tensor_parallel_size,
                               torch_threads=run.torch_threads)  # fmt: skip
        rows = self.world.shard(self.eval_rows())
        n, greedy = max(run.eval_samples, 1), run.eval_samples == 0
        sampling = Sampling(run.max_new_tokens, run.temperature, run.top_p, greedy)
        points = []
        for w, path, weights in [(None, source, {}), *finals]:
            policy = load_policy(path, run.device) if w is not None else policy
            engine.sync(policy)
            ids = [policy.render(r.as_messages(), run.max_prompt_tokens) for r in rows]
            completions = engine.generate(ids, n, sampling, run.seed + 104729)
            scored = rewards.score([r.as_messages() for r in rows], [[c.text for c in g] for g in completions],
                                   [[len(c.token_ids) for c in g] for g in completions])  # fmt: skip
            means = self.world.mean({name: float(scored.objective(name).mean()) for name in scored.names})
            points.append({"w": w, "weights": weights, "policy": str(path), "means": means})
        engine.close()
        return {"objective": self.cfg.objective, "objectives": list(rewards.names), "greedy": greedy,
                "samples_per_prompt": n, "prompts": len(rows) * self.world.size, "points": points}  # fmt: skip


def plot_front(points: list[dict[str, Any]], names: tuple[str, str], path: Path, objective: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(4.4, 3.8))
    trained = [p for p in points if p["w"] is not None]
    xs, ys = [p["means"][names[0]] for p in trained], [p["means"][names[1]] for p in trained]
    axis.plot(xs, ys, marker="o", label="MODPO")
    for point, x, y in zip(trained, xs, ys, strict=True):
        axis.annotate(f"w={point['w']:g}", (x, y), fontsize=8, textcoords="offset points", xytext=(4, 4))
    start = next((p for p in points if p["w"] is None), None)
    if start is not None:
        axis.scatter([start["means"][names[0]]], [start["means"][names[1]]], marker="x", color="gray",
                     label="initial policy")  # fmt: skip
    axis.set_xlabel(names[0])
    axis.set_ylabel(names[1])
    axis.legend(fontsize=8)
    axis.set_title(f"MODPO front (w = weight of {objective})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
