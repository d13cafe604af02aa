"""CGPO (Xu et al., arXiv 2409.20370): constrained RLHF with a mixture of judges, stratified by task.

One step (Algorithm 2 over Algorithm 1, algorithms.md §6):
1. the step's prompts are split by their ``task`` (`CgpoConfig.task_for`); each task samples its own K
   answers per prompt (vLLM, the shared rollout engine);
2. the service scores them against each prompt's baseline (`cgpo_feedback`: the calibrated reward
   ``sigma(r(s, a) - r(s, baseline))``) and the task's judges label them; a sample is feasible (X+) iff
   every judge passes;
3. each task's optimiser turns that into a loss (`cgpo_losses`): CRPG (calibrated-regularised policy
   gradient), CRRAFT (reward-weighted SFT on the best survivor), CODPO (constrained online DPO);
4. one update on ``sum_l rho_l loss_l`` (the task weights), then the new weights go to the rollout engine.

Tasks get the prompts the step drew (the shared, resumable cursor), so B_l is each task's share of the
step, not a per-task batch size: *our reading* of Algorithm 2 under one data cursor. All log-probs are at
the sampling temperature, like GRPO's; KL(s, a) is the sequence sum of ``log pi - log pi_ref``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from service.training.cgpo_baselines import resolve_baselines
from service.training.cgpo_config import CgpoConfig, TaskSpec, assign_tasks
from service.training.cgpo_feedback import Scored, TaskFeedback
from service.training.cgpo_losses import (
    NONE,
    codpo_loss,
    codpo_pairs,
    crpg_loss,
    crpg_rewards,
    crraft_loss,
    crraft_select,
    kl_factor,
    sequence_logprob,
)
from service.training.config import RunConfig
from service.training.data import PromptRow, read_prompts
from service.training.distributed import World
from service.training.loop import TrainerBase
from service.training.sequences import SequenceBatch, batched_logprobs, build_batch, forward_logprobs


class CgpoTrainer(TrainerBase):
    algorithm = "cgpo"
    needs_reference = True
    uneven_backwards = True  # under torchrun a rank may draw no prompt of a task, so no forward for its loss

    def __init__(self, run: RunConfig, cfg: CgpoConfig, world: World) -> None:
        """`preflight` has checked the service, the tasks' judges and rewards, and the prompts' task tags."""
        self.cfg = cfg
        super().__init__(run, world)
        service = self.rewards.names[: len(self.rewards.names) - len(self.rules)]
        self.feedback = TaskFeedback(self.rewards.client, service, self.rewards._with_outage_retries)
        tasks = assign_tasks(cfg, self.prompts, "--prompts")
        self.task_of = {id(row): task for row, task in zip(self.prompts, tasks, strict=True)}
        baselines, generated = resolve_baselines(
            run.prompts, run.out, resume=run.resume, generate=self._greedy, write=world.is_main
        )
        world.barrier()  # rank 0 has written the baselines before anyone can checkpoint or resume
        self.baseline = {id(row): text for row, text in zip(self.prompts, baselines, strict=True)}
        self.generated_baselines = generated

    def _greedy(self, indices: list[int]) -> list[str]:
        """The untrained policy's greedy answers to ``self.prompts[indices]`` (the generated baselines).

        Under torchrun each rank answers its share (`World.shard`) and every rank gets all the answers."""
        rows = self.world.shard([self.prompts[i] for i in indices])
        mine: list[str] = []
        for start in range(0, len(rows), 64):
            _, completions, _ = self.rollout(rows[start : start + 64], 1, seed=self.run.seed, greedy=True)
            mine.extend(group[0].text for group in completions)
        shares = self.world.gather(mine)  # rank r answered indices r, r + size, ...
        return [shares[i % self.world.size][i // self.world.size] for i in range(len(indices))]

    # -- one step -----------------------------------------------------------------------------------

    def train_step(self, step: int, rows: list[PromptRow]) -> dict[str, Any]:
        summed = ("rollout_s", "tokens_generated", "feedback_s", "forward_s")  # over the tasks
        record: dict[str, Any] = dict.fromkeys(summed, 0.0)
        losses, totals = [], {"samples": 0, "feasible": 0, "calibrated": 0.0}
        for t, task in enumerate(self.cfg.tasks):
            task_rows = [row for row in rows if self.task_of[id(row)] is task]
            if not task_rows:
                continue
            part, loss, sums = self._task_step(task, task_rows, self.step_seed(step) + 7919 * t)
            for key in summed:
                record[key] += part.pop(key)
            record.update(part)
            totals = {key: totals[key] + sums[key] for key in totals}
            if loss is not None:
                losses.append(task.weight * loss)
        record["rollout/tokens_per_s"] = record["tokens_generated"] / max(record["rollout_s"], 1e-9)
        record["violation_rate"] = 1.0 - totals["feasible"] / max(totals["samples"], 1)
        record["calibrated/mean"] = totals["calibrated"] / max(totals["samples"], 1)
        started = time.perf_counter()
        total = torch.stack(losses).sum() if losses else None
        if total is not None:
            record["loss"] = float(total.detach())
        updated = self.world.any(total is not None)  # a rank with nothing to learn still joins the average
        if updated:
            record["grad_norm"] = self.optimizer_step(total)
        record["cgpo/updated"] = float(updated)  # 0: no task had a sample to learn from this step
        record["update_s"] = time.perf_counter() - started
        record["sync_s"] = self.finish_update()
        return record

    def _task_step(
        self, task: TaskSpec, rows: list[PromptRow], seed: int
    ) -> tuple[dict[str, float], torch.Tensor | None, dict[str, float]]:
        """Roll out, score, judge and build the task's loss; returns (metrics, loss or None, totals)."""
        prompt_ids, completions, timing = self.rollout(rows, task.k, seed)
        prompts = [row.as_messages() for row in rows]
        texts = [[c.text for c in group] for group in completions]
        baselines = [self.baseline[id(row)] for row in rows]
        asked = time.perf_counter()
        scored = self.feedback.score(task, prompts, texts, baselines)
        verdicts = self.feedback.judge(task, prompts, texts, scored.rewards)  # [B, K, J]
        answered = time.perf_counter()
        batch = self.flat_batch(prompt_ids, completions)
        temperature = self.run.temperature
        ref = sequence_logprob(
            batched_logprobs(self.reference, batch, temperature), batch.completion_mask
        )  # [N]
        samples = _Samples(
            task, batch, scored, torch.as_tensor(verdicts.all(-1)), ref, prompt_ids, prompts, baselines
        )
        if task.optimizer == "crpg":
            logp, _ = forward_logprobs(self.model, batch, temperature)
            seq = sequence_logprob(logp, batch.completion_mask)  # [N], with gradients
            samples.kl = seq.detach() - ref
            loss, extra = self._crpg(samples, seq)
        else:
            now = batched_logprobs(self.policy.model, batch, temperature)
            samples.kl = sequence_logprob(now, batch.completion_mask) - ref
            loss, extra = self._crraft(samples) if task.optimizer == "crraft" else self._codpo(samples)
        metrics = {**_judge_metrics(task, verdicts), **_task_metrics(task, samples), **extra,
                   "rollout_s": timing["rollout_s"], "tokens_generated": timing["tokens_generated"],
                   "feedback_s": answered - asked,  # the service's scores and judges
                   "forward_s": time.perf_counter() - answered}  # reference + policy forwards, the loss  # fmt: skip
        if loss is not None:
            metrics[f"cgpo/{task.name}/loss"] = float(loss.detach())
        sums = {"samples": verdicts.shape[0] * verdicts.shape[1], "feasible": float(verdicts.all(-1).sum()),
                "calibrated": float(scored.calibrated.sum())}  # fmt: skip
        return metrics, loss, sums

    # -- the three optimisers -----------------------------------------------------------------------

    def _crpg(self, s: _Samples, seq: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        rewards = crpg_rewards(s.calibrated.reshape(-1), s.feasible.reshape(-1), s.kl, s.task.kl_max)  # [N]
        name = s.task.name
        return crpg_loss(seq, rewards), {f"cgpo/{name}/crpg_reward/mean": float(rewards.mean()),
                                         f"cgpo/{name}/kl_factor/mean": float(kl_factor(s.kl, s.task.kl_max).mean())}  # fmt: skip

    def _crraft(self, s: _Samples) -> tuple[torch.Tensor | None, dict[str, float]]:
        b, k = s.feasible.shape
        index, over_kl = crraft_select(s.calibrated, s.feasible, s.kl.reshape(b, k), s.task.kl_max)
        empty = [i for i in range(b) if int(index[i]) == NONE]
        fallback = set()
        if empty:
            passes = self.feedback.baseline_passes(
                s.task, [s.prompts[i] for i in empty], [s.baselines[i] for i in empty]
            )
            fallback = {i for i, ok in zip(empty, passes, strict=True) if ok}
        prompts, answers, weights = [], [], []
        for i in range(b):
            if int(index[i]) != NONE:
                answers.append(list(s.batch_tokens(i * k + int(index[i]))))
                weights.append(float(s.calibrated[i, int(index[i])]))
            elif i in fallback:  # the baseline, when it satisfies every judge: R_calib = sigma(0) = 0.5
                answers.append(self._tokens(s.baselines[i]))
                weights.append(0.5)
            else:
                continue
            prompts.append(s.prompt_ids[i])
        name = s.task.name
        extra = {f"cgpo/{name}/over_kl_rate": float(over_kl.float().mean()), f"cgpo/{name}/selected": float(len(answers)),
                 f"cgpo/{name}/baseline_fallbacks": float(len(fallback)), f"cgpo/{name}/skipped": float(b - len(answers))}  # fmt: skip
        if not answers:
            return None, extra
        winners = build_batch(prompts, answers, int(self.policy.tokenizer.pad_token_id)).to(self.run.device)
        logp, _ = forward_logprobs(self.model, winners, self.run.temperature)
        return crraft_loss(sequence_logprob(logp, winners.completion_mask), torch.tensor(weights)), extra

    def _codpo(self, s: _Samples) -> tuple[torch.Tensor | None, dict[str, float]]:
        b, k = s.feasible.shape
        chosen, rejected = codpo_pairs(s.calibrated, s.feasible)
        keep = [i for i in range(b) if int(chosen[i]) != NONE]
        name = s.task.name
        extra = {f"cgpo/{name}/pairs": float(len(keep)),
                 f"cgpo/{name}/skipped_no_feasible": float((~s.feasible.any(-1)).sum()),
                 f"cgpo/{name}/no_violator": float((s.feasible.all(-1)).sum())}  # fmt: skip
        if not keep:
            return None, extra
        rows = torch.tensor([i * k + int(chosen[i]) for i in keep] + [i * k + int(rejected[i]) for i in keep])
        pair = s.batch.select(rows)
        logp, _ = forward_logprobs(self.model, pair, self.run.temperature)
        seq = sequence_logprob(logp, pair.completion_mask)  # [2P]: chosen first, then rejected
        p = len(keep)
        tokens = pair.completion_mask.sum(-1)[:p]
        loss, dpo, nll = codpo_loss(
            seq[:p], seq[p:], s.ref[rows[:p]], s.ref[rows[p:]], tokens, self.cfg.beta, self.cfg.nll_coef
        )
        margin = s.calibrated[keep, chosen[keep]] - s.calibrated[keep, rejected[keep]]
        extra.update({f"cgpo/{name}/dpo_loss": float(dpo.detach()), f"cgpo/{name}/nll": float(nll.detach()),
                      f"cgpo/{name}/calibrated_margin": float(margin.mean())})  # fmt: skip
        return loss, extra

    def _tokens(self, text: str) -> list[int]:
        """A baseline's token ids as a completion: the text, then the end-of-turn token."""
        ids = self.policy.tokenizer.encode(text, add_special_tokens=False)
        return list(ids)[: self.run.max_new_tokens - 1] + [int(self.policy.tokenizer.eos_token_id)]

    # -- evaluation ---------------------------------------------------------------------------------

    def evaluate(self, when: str) -> dict[str, Any]:
        """Per-objective rewards and per-task / per-judge violation rates on ``--eval-prompts``.

        Under torchrun each rank answers its share of the prompts; rank 0 pools them and writes the record."""
        rows = self.world.shard(read_prompts(self.run.eval_prompts))
        n, greedy = max(self.run.eval_samples, 1), self.run.eval_samples == 0
        mine: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # task -> (verdicts [B, n, J], rewards [B*n, O])
        for task in self.cfg.tasks:
            task_rows = [row for row in rows if self.cfg.task_for(row.task) is task]
            if not task_rows:
                continue
            _, completions, _ = self.rollout(task_rows, n, seed=self.run.seed + 7919, greedy=greedy)
            texts = [[c.text for c in group] for group in completions]
            rewards = self.score(task_rows, completions)
            verdicts = self.feedback.judge(task, [r.as_messages() for r in task_rows], texts, rewards)
            mine[task.name] = (verdicts, rewards.values.reshape(-1, rewards.values.shape[-1]))
        shares = self.world.gather(mine)
        record: dict[str, Any] = {"when": when, "step": self.start_step if when == "before" else self.run.steps}
        values, feasible = [], []
        for task in self.cfg.tasks:
            parts = [share[task.name] for share in shares if task.name in share]
            if not parts:
                continue
            verdicts = np.concatenate([v for v, _ in parts])
            record.update(_judge_metrics(task, verdicts))
            values.extend(r for _, r in parts)
            feasible.append(verdicts.all(-1).reshape(-1))
        stacked = np.concatenate(values)
        record.update(
            {f"rewards/{name}/mean": float(stacked[:, i].mean()) for i, name in enumerate(self.rewards.names)}
        )
        record["violation_rate"] = 1.0 - float(np.concatenate(feasible).mean())
        if self.world.is_main:
            with (self.run.out / "eval.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record


class _Samples:
    """One task's samples this step, row-aligned: ``calibrated`` / ``feasible`` [B, K], ``ref`` / ``kl`` [N]."""

    def __init__(self, task: TaskSpec, batch: SequenceBatch, scored: Scored, feasible: torch.Tensor,
                 ref: torch.Tensor, prompt_ids: list[list[int]], prompts: list[Any], baselines: list[str]) -> None:  # fmt: skip
        self.task, self.batch, self.feasible, self.ref = task, batch, feasible, ref
        self.calibrated = torch.as_tensor(scored.calibrated, dtype=torch.float32)
        self.prompt_ids, self.prompts = prompt_ids, prompts
        self.kl = torch.zeros_like(ref)
        self.baselines = baselines

    def batch_tokens(self, row: int) -> list[int]:
        """Completion ``row``'s token ids (from the padded batch)."""
        mask = self.batch.completion_mask[row].bool()
        return self.batch.targets[row][mask].tolist()


def _judge_metrics(task: TaskSpec, verdicts: np.ndarray) -> dict[str, float]:
    """``cgpo/TASK/violation_rate`` (any judge) and ``cgpo/TASK/judge/LABEL/violation_rate``. verdicts [B, K, J]."""
    out = {f"cgpo/{task.name}/violation_rate": 1.0 - float(verdicts.all(-1).mean())}
    for j, use in enumerate(task.judges):
        out[f"cgpo/{task.name}/judge/{use.label}/violation_rate"] = 1.0 - float(verdicts[..., j].mean())
    return out


def _task_metrics(task: TaskSpec, s: _Samples) -> dict[str, float]:
    name = task.name
    return {f"cgpo/{name}/calibrated/mean": float(s.calibrated.mean()), f"cgpo/{name}/kl/mean": float(s.kl.mean()),
            f"cgpo/{name}/prompts": float(s.feasible.shape[0]),
            f"cgpo/{name}/no_feasible_prompts": float((~s.feasible.any(-1)).sum())}  # fmt: skip
