"""MAPL (Sun et al., arXiv 2505.12845) for DPO: original pairs plus intra- and inter-sample pairs (§7).

Input: ``paretorm augment`` output (`service.preference.data.read_mapl`), one `MaplExample` per original
pair; ``--prompts-per-step`` examples per step, each with every pair built from it. With
``h(y|x) = log pi(y|x) - log pi_ref(y|x)`` (summed over the response):

- DPO on the original pairs: margin ``beta (h(y_w|x) - h(y_l|x))``;
- the intra-sample loss [third-party, Rc-DPO form]: one response ``y`` under two prompts ``x_w > x_l``,
  margin ``beta (h(y|x_w) - h(y|x_l))``;
- the inter-sample loss [our reading: the paper's construction and loss were not available]: the DPO
  margin under ``prompt_more`` (where the rejected response violates more instructions) should exceed the
  margin under ``prompt_fewer``: ``-log sigma(m_more - m_fewer)``. Off unless ``--inter-weight`` > 0.

``L = L_DPO + intra_weight L_intra + inter_weight L_inter`` [our reading of how they combine]: the first
two terms are `service.preference.losses.preference_loss_with_intra`, the loss ``paretorm fit`` minimises
for the gating network (score margins there, implicit-reward margins here), each a mean of
`preference_loss` over its pairs. A step's examples carry 10 sequences each at two instructions, so the
step runs in micro-batches of whole examples (`OfflineTrainer.accumulate`) and each adds its share of
those means (`loss_share`).

``--eval-pairs`` (a held-out augmented file): the implicit-reward accuracy of each kind (``margin > 0``;
ties count one half, so the untrained policy, whose margins are all 0, scores 0.5) before and after
training, in ``OUT/eval_pairs.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from service.preference.data import DataError, MaplExample, read_mapl
from service.preference.losses import pair_accuracy, preference_loss
from service.training.config import ConfigError, RunConfig
from service.training.distributed import World
from service.training.offline import OfflineItem, OfflineTrainer, Turn, split_conversation
from service.training.offline_config import MaplConfig

KINDS = ("pairs", "intra", "inter")


class MaplTrainer(OfflineTrainer):
    algorithm = "mapl"

    def __init__(self, run: RunConfig, cfg: MaplConfig, world: World) -> None:
        super().__init__(run, cfg, world)
        self.eval_items: list[OfflineItem] = []
        if cfg.eval_pairs is not None:
            self.eval_items = [OfflineItem(i, ex) for i, ex in enumerate(self.read_items(cfg.eval_pairs))]
            self.eval_reference = self.reference_table("eval", self.eval_items, cfg.eval_pairs)

    def read_items(self, path: Path) -> list[MaplExample]:
        try:
            return read_mapl(path).examples
        except DataError as error:
            raise ConfigError(f"mapl data: {error}") from None

    def turns(self, item: MaplExample) -> list[Turn]:
        """Originals (chosen, rejected), intra (x_w, x_l), inter (more c, more r, fewer c, fewer r)."""
        turns = [split_conversation(c) for p in item.pairs + item.intra for c in (p.chosen, p.rejected)]
        return turns + [split_conversation(c) for p in item.inter
                        for c in (p.more_chosen, p.more_rejected, p.fewer_chosen, p.fewer_rejected)]  # fmt: skip

    def margins(self, items: list[OfflineItem], ratios: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per kind, the margins of every pair of ``items``: pairs [P], intra [I], inter (more - fewer) [J]."""
        beta, parts = self.cfg.beta, {k: [] for k in KINDS}
        for item, h in zip(items, ratios, strict=True):
            n_pairs, n_intra = len(item.data.pairs), len(item.data.intra)
            two = h[: 2 * (n_pairs + n_intra)].view(-1, 2)
            diff = beta * (two[:, 0] - two[:, 1])
            parts["pairs"].append(diff[:n_pairs])
            parts["intra"].append(diff[n_pairs:])
            four = h[2 * (n_pairs + n_intra) :].view(-1, 4)
            parts["inter"].append(beta * ((four[:, 0] - four[:, 1]) - (four[:, 2] - four[:, 3])))
        return {k: torch.cat(v) if v else torch.zeros(0) for k, v in parts.items()}

    def train_step(self, step: int, rows: list[OfflineItem]) -> dict[str, Any]:
        started = time.perf_counter()
        loss, ratios, m = self._accumulate(rows)
        record: dict[str, Any] = {"loss": loss, "grad_norm": self.optimizer_step(None)}
        self.scheduler.step()
        record.update(self._pair_metrics(rows, ratios))
        for kind in KINDS:
            margins = m[kind]
            record[f"{kind}/loss"] = float(preference_loss(margins)) if margins.numel() else float("nan")
            record[f"{kind}/accuracy"] = pair_accuracy(margins)
            record[f"{kind}/count"] = float(margins.numel())
        record["update_s"] = time.perf_counter() - started
        return record

    def _accumulate(
        self, rows: list[OfflineItem]
    ) -> tuple[float, list[torch.Tensor], dict[str, torch.Tensor]]:
        """`accumulate` over ``rows``: (the loss, every item's detached ratios, the step's margins per kind).

        The margins are kept (detached) from each micro-batch's loss rather than computed again over all
        rows for the logs; micro-batches run in row order, so their concatenation is `margins` of ``rows``.
        """
        counts, seen = self.kind_counts(rows), []

        def loss_of(part: list[OfflineItem], h: list[torch.Tensor]) -> torch.Tensor:
            m = self.margins(part, h)
            seen.append({k: v.detach() for k, v in m.items()})
            return self.loss_share(m, counts)

        loss, ratios = self.accumulate("train", rows, self.reference_logps, loss_of)
        return loss, ratios, {k: torch.cat([m[k] for m in seen]) if seen else torch.zeros(0) for k in KINDS}

    def loss_share(self, m: dict[str, torch.Tensor], counts: dict[str, int]) -> torch.Tensor:
        """A micro-batch's part of ``L_DPO + intra_weight L_intra + inter_weight L_inter`` over the whole step.

        With every pair in one micro-batch this is `preference_loss_with_intra` (+ the inter term) exactly.
        """
        loss = self.share(preference_loss, m["pairs"], counts["pairs"])
        if self.cfg.intra_weight and counts["intra"]:
            loss = loss + self.cfg.intra_weight * self.share(preference_loss, m["intra"], counts["intra"])
        if self.cfg.inter_weight and counts["inter"]:
            loss = loss + self.cfg.inter_weight * self.share(preference_loss, m["inter"], counts["inter"])
        return loss

    @staticmethod
    def kind_counts(rows: list[OfflineItem]) -> dict[str, int]:
        """How many pairs of each kind ``rows`` hold (the denominators of the step's means)."""
        return {"pairs": sum(len(r.data.pairs) for r in rows), "intra": sum(len(r.data.intra) for r in rows),
                "inter": sum(len(r.data.inter) for r in rows)}  # fmt: skip

    def _pair_metrics(self, rows: list[OfflineItem], ratios: list[torch.Tensor]) -> dict[str, float]:
        sides = [h[: 2 * len(item.data.pairs)].view(-1, 2) for item, h in zip(rows, ratios, strict=True)]
        both = torch.cat(sides) if sides else torch.zeros(0, 2)
        return self.dpo_metrics(both[:, 0], both[:, 1], self.cfg.beta)

    # -- held-out accuracy -------------------------------------------------------------------------

    def train(self) -> Path:
        if self.eval_items and self.start_step == 0:
            self.evaluate_pairs("before")
        final = super().train()
        if self.eval_items:
            self.evaluate_pairs("after")
        return final

    def evaluate_pairs(self, when: str) -> dict[str, Any]:
        """Implicit-reward accuracy per kind on ``--eval-pairs`` (ties: one half), on rank 0's whole file."""
        logps = self.sequence_logps(self.policy.model, "eval", self.eval_items)
        ratios = [now - ref for now, ref in zip(logps, self.eval_reference, strict=True)]
        m = self.margins(self.eval_items, ratios)
        record: dict[str, Any] = {"when": when, "step": self.start_step if when == "before" else self.run.steps}
        for kind in KINDS:
            margins = m[kind]
            record[f"{kind}/accuracy"] = (float(((margins > 0).float() + 0.5 * (margins == 0).float()).mean())
                                          if margins.numel() else None)  # fmt: skip
            record[f"{kind}/count"] = int(margins.numel())
        if self.world.is_main:
            with (self.run.out / "eval_pairs.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record
