"""MODPO (Zhou et al., arXiv 2310.03708): multi-objective DPO, RL-free (algorithms.md §2).

The preference file ranks one objective ``k`` (``--objective``); every other objective with a non-zero
weight in ``--weights`` enters as a margin reward ``r_{-k}``: a service objective (scored once per pair,
`margin_cache`) or a trainer-side rule reward (the authors' length-penalty script, §2.3). The loss is

    -log sigma( (1/w_k) (beta h_w - beta h_l - w_{-k} . (r_{-k}(x, y_w) - r_{-k}(x, y_l))) ),

``h = sum_t log pi(y_t|...) - log pi_ref(y_t|...)`` (`losses.modpo_logits`): DPO when ``w_{-k} = 0``. Weights
are used as given (the paper takes ``w`` on the simplex; `--sweep` builds such vectors). The reference is
the initial policy, its log-probs computed once (`offline`). The hinge variant of the authors' code is not
offered.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.preference.data import DataError, PreferencePair, read_preferences
from service.training.config import ConfigError, RunConfig
from service.training.distributed import World
from service.training.losses import modpo_logits, sigmoid_loss
from service.training.margin_cache import MarginCache
from service.training.offline import OfflineItem, OfflineTrainer, Turn, split_conversation
from service.training.offline_config import ModpoConfig


class ModpoTrainer(OfflineTrainer):
    algorithm = "modpo"

    def __init__(self, run: RunConfig, cfg: ModpoConfig, world: World) -> None:
        super().__init__(run, cfg, world)
        self.objective = str(cfg.objective)
        self.trained_weight = float(run.weights[self.objective])
        # `preflight` checked that every margin name is among the rewards
        self.margin_names = [n for n, w in run.weights.items() if n != self.objective and w != 0]
        self.margin_weights = torch.tensor([run.weights[n] for n in self.margin_names], dtype=torch.float32)
        self.margins = self._margin_rewards()  # [P, 2, M]

    def read_items(self, path: Path) -> list[PreferencePair]:
        try:
            return read_preferences(path).pairs
        except DataError as error:
            raise ConfigError(f"--prompts: {error}") from None

    def turns(self, item: PreferencePair) -> list[Turn]:
        return [split_conversation(item.chosen), split_conversation(item.rejected)]

    # -- margins -----------------------------------------------------------------------------------

    def _margin_rewards(self) -> np.ndarray:
        """[P, 2, M] margin rewards of every pair (service objectives from the cache, rules by length)."""
        service_names = list(self.rewards.names[: len(self.rewards.names) - len(self.rewards.rules)])
        pairs = [(*split_conversation(i.data.chosen), i.data.rejected[-1]["content"]) for i in self.prompts]
        service = np.zeros((len(pairs), 2, len(service_names)))
        self.margin_pairs_scored = 0
        if any(n in service_names for n in self.margin_names):
            cache = MarginCache(self.cfg.margin_cache or self.run.out / "margin_cache.json",
                                self.rewards.revision, service_names)  # fmt: skip
            if self.world.is_main:
                service = cache.fill(pairs, self._score_service)
                self.margin_pairs_scored = cache.scored_now
            self.world.barrier()
            if not self.world.is_main:
                service = MarginCache(cache.path, self.rewards.revision, service_names).fill(pairs, self._refuse)
        lengths = np.array([[len(c) for _, c in self.encode("train", item)] for item in self.prompts])
        rules = np.array([[[rule(int(n)) for rule in self.rewards.rules] for n in row] for row in lengths])
        every = np.concatenate([service, rules.reshape(len(pairs), 2, -1)], axis=-1)
        index = [list(self.rewards.names).index(n) for n in self.margin_names]
        self._log_margins(len(pairs))
        return every[..., index]

    def _score_service(self, prompts: list[Any], responses: list[list[str]]) -> np.ndarray:
        lengths = [[len(r) for r in pair] for pair in responses]  # unused by the service columns kept
        rewards = self.rewards.score(prompts, responses, lengths)
        return rewards.values[..., : rewards.values.shape[-1] - len(self.rewards.rules)]

    @staticmethod
    def _refuse(prompts: list[Any], responses: list[list[str]]) -> np.ndarray:
        raise RuntimeError("rank 0 filled the margin cache; another rank found pairs missing from it")

    def _log_margins(self, pairs: int) -> None:
        if self.world.is_main:
            self.run.out.mkdir(parents=True, exist_ok=True)
            with (self.run.out / "margin_runs.jsonl").open("a") as fh:
                fh.write(json.dumps({"start_step": self.start_step, "pairs": pairs, "scored": self.margin_pairs_scored,
                                     "revision": self.rewards.revision, "margins": self.margin_names}) + "\n")  # fmt: skip

    # -- the step ----------------------------------------------------------------------------------

    def train_step(self, step: int, rows: list[OfflineItem]) -> dict[str, Any]:
        started = time.perf_counter()
        def loss_of(part: list[OfflineItem], h: list[torch.Tensor]) -> torch.Tensor:
            return self.share(sigmoid_loss, self._logits(h, self._delta(part)), len(rows))

        loss, ratio_list = self.accumulate("train", rows, self.reference_logps, loss_of)
        ratios = torch.stack(ratio_list)  # [B, 2]
        delta = self._delta(rows)
        logits = self._logits(ratio_list, delta)
        record: dict[str, Any] = {"loss": loss, "grad_norm": self.optimizer_step(None)}
        self.scheduler.step()
        record.update(self.dpo_metrics(ratios[:, 0], ratios[:, 1], self.cfg.beta))
        record["modpo/margin_term"] = float((delta @ self.margin_weights).mean())
        record["modpo/logits"] = float(logits.detach().mean())
        record["modpo/accuracy"] = float((logits.detach() > 0).float().mean())
        for m, name in enumerate(self.margin_names):
            record[f"modpo/margin_delta/{name}"] = float(delta[:, m].mean())
        record["update_s"] = time.perf_counter() - started
        return record

    def _delta(self, rows: list[OfflineItem]) -> torch.Tensor:
        """The margin rewards' differences ``r(y_w) - r(y_l)`` of ``rows``. [B, M]"""
        index = [item.index for item in rows]
        return torch.as_tensor(self.margins[index, 0] - self.margins[index, 1], dtype=torch.float32)

    def _logits(self, ratios: list[torch.Tensor], delta: torch.Tensor) -> torch.Tensor:
        """MODPO's logits from the rows' ``[h_w, h_l]`` ratios and their margin ``delta`` [B, M]. [B]

        ``delta`` comes from the caller, which logs it too: the step reads it from the margins once.
        """
        h = torch.stack(ratios)  # [B, 2]
        return modpo_logits(h[:, 0], h[:, 1], delta, self.margin_weights, self.trained_weight, self.cfg.beta)
