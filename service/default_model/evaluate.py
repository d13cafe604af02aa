"""Held-out figures of an ArmoRM-layout model on the shipped ``heldout.jsonl`` pairs.

The pairs use only the held-out quarter of the text banks (questions and requests the heads never saw),
and are scored exactly as the server scores them: the checkpoint's chat template, ``add_special_tokens``
off, the reward token = the last token, the gate token found by the gate pattern.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from service.default_model.dataset import shipped_dir
from service.fitting.embed import BackboneEmbedder
from service.fitting.encoding import encode_conversations
from service.model.armorm import ArmoRMRewardModel
from service.model.outputs import RewardOutput

Message = dict[str, str]
# Which objective should separate chosen from rejected, per kind of held-out pair.
_OBJECTIVE_OF_KIND = {"harmful": "refusal", "instruction": "instruction-following", "format": "format"}


def read_heldout(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or shipped_dir() / "heldout.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def conversation(prompt: str, response: str) -> list[Message]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


@torch.inference_mode()
def score(model: ArmoRMRewardModel, tokenizer: Any, conversations: Sequence[Sequence[Message]],
          *, batch_tokens: int = 8192) -> RewardOutput:  # fmt: skip
    """Rewards, gate weights and scores of ``conversations`` (in order)."""
    lines = list(range(1, len(conversations) + 1))
    pattern = model.gating_token_pattern
    items, _ = encode_conversations(tokenizer, conversations, pattern, path="-", lines=lines, max_tokens=None)
    pad = model.pad_token_id if model.pad_token_id is not None else 0
    embedder = BackboneEmbedder(model.model, pad_id=pad, batch_tokens=batch_tokens)
    emb = embedder.embed(items)  # type: ignore[arg-type]
    return model.heads(emb.last, emb.gate)


def heldout_metrics(
    model: ArmoRMRewardModel, tokenizer: Any, lines: list[dict[str, Any]] | None = None
) -> dict:
    """Pairwise accuracy of the gated score (overall and per kind) and of the objective each kind targets."""
    lines = lines if lines is not None else read_heldout()
    convs = [conversation(line["prompt"], line[side]) for line in lines for side in ("chosen", "rejected")]
    out = score(model, tokenizer, convs)
    s = out.score.reshape(-1, 2)
    r = out.rewards.reshape(len(lines), 2, -1)
    names = list(model.objective_names)
    wins: dict[str, list[bool]] = defaultdict(list)
    objective_wins: dict[str, list[bool]] = defaultdict(list)
    for i, line in enumerate(lines):
        kind = line["meta"]["kind"]
        wins[kind].append(bool(s[i, 0] > s[i, 1]))
        target = _OBJECTIVE_OF_KIND.get(kind)
        if target in names:
            k = names.index(target)
            objective_wins[target].append(bool(r[i, 0, k] > r[i, 1, k]))
    every = [w for ws in wins.values() for w in ws]
    return {
        "pairs": len(lines),
        "score_accuracy": sum(every) / len(every),
        "score_accuracy_by_kind": {k: sum(v) / len(v) for k, v in sorted(wins.items())},
        "objective_accuracy": {k: sum(v) / len(v) for k, v in sorted(objective_wins.items())},
    }
