"""What MODPO and MAPL share: fixed preference data, tokenised once, and reference log-probs computed once.

An offline trainer walks a list of `OfflineItem` (one preference pair, or one MAPL example with the
pairs built from it) with the loop's `PromptCursor`, so ``--resume`` continues with the same next batch
exactly as for prompts, and torchrun shards items like prompts. It never samples during training: the
rollout engine is built on first use, for evaluation only (`TrainerBase.rollout_during_training`).

Every item is a fixed list of (prompt messages, response text) sequences. A response is tokenised
without special tokens, cut to ``--max-response-tokens`` and closed with the end-of-turn token (what the
chat template ends an assistant turn with), so the policy learns where an answer stops.

A step's forward and backward run over micro-batches of whole items, at most ``--micro-batch-sequences``
sequences each (an item with more runs alone), and the gradients accumulate: the with-gradient forward
keeps every layer's activations for the backward, so its memory grows with the sequences in it. On
SmolLM2-135M one sequence of ~230 tokens costs ~0.2 GB, and a MAPL step of 8 examples with two
instructions each (10 sequences per example, 80 in all) went past 14 GB in one forward before this.
Every loss here is a mean over pairs, so each micro-batch's loss is its share of the step's mean
(`share`) and the accumulated gradient is the one-forward gradient.

The reference is the initial policy (TRL's default). Its summed log-probs of every sequence are computed
once, before the first update, and written to ``OUT/reference_logps.pt`` keyed by the data file, the
policy source and the token limits: ``--resume`` (and every member of a MODPO sweep) reads them back and
keeps no reference model in memory; only a run that lost the file loads the reference again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.training.data import Messages
from service.training.loop import TrainerBase
from service.training.policy import load_policy
from service.training.sequences import SequenceBatch, batched_logprobs, build_batch, forward_logprobs

logger = logging.getLogger(__name__)

Turn = tuple[Messages, str]
"""A prompt (chat messages ending before the response) and the response text."""


@dataclass(frozen=True)
class OfflineItem:
    """One unit of offline data and its index in the file (the key of its cached reference log-probs)."""

    index: int
    data: Any


def split_conversation(conversation: Sequence[dict[str, str]]) -> Turn:
    """A full conversation (``service.preference.data`` form) as (prompt messages, last assistant turn)."""
    return [dict(m) for m in conversation[:-1]], conversation[-1]["content"]


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_digest(source: Path) -> str:
    """Identity of a policy directory: its config and weight files' names, sizes and modification times."""
    parts = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in sorted(source.iterdir())
             if p.suffix in (".json", ".safetensors", ".bin")]  # fmt: skip
    return hashlib.sha256(json.dumps([str(source.resolve()), parts]).encode()).hexdigest()


class OfflineTrainer(TrainerBase):
    """Subclasses implement ``read_items``, ``turns`` and ``train_step``."""

    rollout_during_training = False

    def __init__(self, run: Any, cfg: Any, world: Any) -> None:
        self.cfg = cfg
        self._encoded: dict[tuple[str, int], list[tuple[list[int], list[int]]]] = {}
        super().__init__(run, world)
        self.cache_root = Path(getattr(cfg, "cache_root", None) or run.out)
        self.reference_logps = self.reference_table("train", self.prompts, run.prompts)

    # -- hooks -------------------------------------------------------------------------------------

    def read_items(self, path: Path) -> list[Any]:
        raise NotImplementedError

    def turns(self, item: Any) -> list[Turn]:
        """The item's sequences in a fixed order (the subclass reads its log-probs back by position)."""
        raise NotImplementedError

    def load_data(self) -> list[OfflineItem]:
        return [OfflineItem(i, data) for i, data in enumerate(self.read_items(self.run.prompts))]

    # -- tokens and log-probs ----------------------------------------------------------------------

    def encode(self, name: str, item: OfflineItem) -> list[tuple[list[int], list[int]]]:
        key = (name, item.index)
        if key not in self._encoded:
            tokenizer = self.policy.tokenizer
            end = int(tokenizer.eos_token_id)
            encoded = []
            for prompt, response in self.turns(item.data):
                ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
                encoded.append((self.policy.render(prompt, self.run.max_prompt_tokens),
                                ids[: self.cfg.max_response_tokens - 1] + [end]))  # fmt: skip
            self._encoded[key] = encoded
        return self._encoded[key]

    def batch(self, name: str, items: Sequence[OfflineItem]) -> tuple[SequenceBatch, list[int]]:
        """All sequences of ``items`` as one batch [N, ...] and how many each item has."""
        encoded = [self.encode(name, item) for item in items]
        flat = [seq for group in encoded for seq in group]
        batch = build_batch([p for p, _ in flat], [c for _, c in flat], int(self.policy.tokenizer.pad_token_id))
        return batch.to(self.run.device), [len(group) for group in encoded]

    def logratios(self, name: str, items: Sequence[OfflineItem], reference: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per item, ``log pi(y|x) - log pi_ref(y|x)`` summed over response tokens, with gradients. [n_i] each."""
        batch, counts = self.batch(name, items)
        logp, _ = forward_logprobs(self.model, batch)  # [N, T], zero off the response
        sums = logp.sum(-1)  # [N]
        ref = torch.cat([reference[item.index] for item in items]).to(sums)
        return list((sums - ref).split(counts))

    def micro_batches(self, name: str, items: Sequence[OfflineItem]) -> Iterator[list[OfflineItem]]:
        """Consecutive runs of whole ``items`` of at most ``--micro-batch-sequences`` sequences each.

        An item is never split (its loss needs all its sequences at once): one with more sequences than
        the budget is a micro-batch of its own.
        """
        budget, part, size = self.cfg.micro_batch_sequences, [], 0
        for item in items:
            n = len(self.encode(name, item))
            if part and size + n > budget:
                yield part
                part, size = [], 0
            part.append(item)
            size += n
        if part:
            yield part

    def accumulate(
        self, name: str, rows: Sequence[OfflineItem], reference: list[torch.Tensor],
        loss_of: Callable[[list[OfflineItem], list[torch.Tensor]], torch.Tensor],
    ) -> tuple[float, list[torch.Tensor]]:
        """Backward of the step's loss one micro-batch at a time; (the loss, every item's detached ratios).

        ``loss_of(part, ratios)`` is the micro-batch's share of the step's loss (`share`), so the shares sum
        to it and the gradients to its gradient. Under DDP only the last backward all-reduces (``no_sync``
        before it), so ranks whose rows split into different numbers of micro-batches still meet once.
        """
        parts = list(self.micro_batches(name, rows))
        no_sync = getattr(self.model, "no_sync", None)
        total, ratios = 0.0, []
        for i, part in enumerate(parts):
            with no_sync() if no_sync is not None and i < len(parts) - 1 else nullcontext():
                h = self.logratios(name, part, reference)
                loss = loss_of(part, h)
                loss.backward()
            total += float(loss.detach())
            ratios.extend(r.detach() for r in h)
        return total, ratios

    @torch.no_grad()
    def sequence_logps(self, model: nn.Module, name: str, items: Sequence[OfflineItem]) -> list[torch.Tensor]:
        """Per item, the summed log-prob of each of its sequences under ``model`` (no gradients). [n_i] each.

        Micro-batches of whole items as in training, each padded to its own width.
        """
        was_training = model.training
        model.eval()
        out: list[torch.Tensor] = []
        for part in self.micro_batches(name, items):
            batch, counts = self.batch(name, part)
            out.extend(batched_logprobs(model, batch, 1.0, chunk=self.cfg.micro_batch_sequences).sum(-1).cpu()
                       .split(counts))  # fmt: skip
        model.train(was_training)
        return out

    def reference_table(self, name: str, items: Sequence[OfflineItem], path: Path) -> list[torch.Tensor]:
        """The reference's summed log-probs of every sequence of ``items``, from the cache or computed once."""
        cache = self.cache_root / f"reference_logps-{name}.pt"
        key = hashlib.sha256(json.dumps([self.algorithm, file_digest(path), source_digest(self.source),
                                         self.run.max_prompt_tokens, self.cfg.max_response_tokens]).encode()).hexdigest()  # fmt: skip
        if cache.is_file():
            stored = torch.load(cache, weights_only=True)
            if stored.get("key") == key:
                return list(stored["logps"])
            logger.info("%s: the data or the policy changed; computing the reference log-probs again", cache)
        if self.start_step == 0 and not self.run.resume:
            model = self.policy.model  # untrained: it is the reference
        else:
            logger.info("%s missing: loading the reference policy %s to recompute it", cache, self.source)
            model = load_policy(self.source, self.run.device).model
        table = self.sequence_logps(model, name, items)
        if self.world.is_main:
            cache.parent.mkdir(parents=True, exist_ok=True)
            staging = cache.with_suffix(".tmp")
            torch.save({"key": key, "logps": table}, staging)
            os.replace(staging, cache)
        self.world.barrier()
        return table

    # -- losses and metrics ------------------------------------------------------------------------

    @staticmethod
    def share(loss: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor, total: int) -> torch.Tensor:
        """A micro-batch's part of ``loss``, a mean over the step's ``total`` pairs: ``loss(values) n / total``.

        No values: 0, still in the graph (as `preference_loss_with_intra` does for no pairs).
        """
        return loss(values) * (values.numel() / total) if values.numel() else values.sum()

    @staticmethod
    def dpo_metrics(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> dict[str, float]:
        """TRL's DPO logs: implicit rewards ``beta h`` of both sides, their margin and the accuracy. [N] each."""
        chosen, rejected = beta * chosen.detach(), beta * rejected.detach()
        if not chosen.numel():
            return {k: float("nan") for k in ("rewards/chosen", "rewards/rejected", "rewards/margins",
                                               "rewards/accuracies")}  # fmt: skip
        return {"rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean()),
                "rewards/margins": float((chosen - rejected).mean()),
                "rewards/accuracies": float((chosen > rejected).float().mean())}  # fmt: skip
