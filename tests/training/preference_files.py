"""Preference files for the offline-trainer tests, built from the test prompts (no model involved).

``length_pairs``: pairs whose responses differ in length only (a short and a long answer built from the
tiny tokenizer's own corpus words), the shorter chosen with probability ``p_short``: a preference the tiny
policy can learn (answer length is its end-of-turn probability), with label noise so that its
Bradley–Terry reward gap is finite (``logit(p_short)``) and a margin objective can outweigh it.
``mapl_file``: the same pairs through ``paretorm augment``'s library call.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from service.objectives.mapl_cli import augment_jsonl

WORDS = ("the river and the mountain are near the city and the sky is blue over the earth and the air "
         "where water runs fast").split()  # fmt: skip


def answer(rng: random.Random, words: int) -> str:
    start = rng.randrange(len(WORDS))
    text = " ".join(WORDS[(start + i) % len(WORDS)] for i in range(words))
    return text[0].upper() + text[1:] + "."


def length_pairs(path: Path, prompts: list[str], *, per_prompt: int = 2, p_short: float = 1.0,
                 short: tuple[int, int] = (1, 3), long: tuple[int, int] = (10, 14), seed: int = 0) -> Path:  # fmt: skip
    rng = random.Random(seed)
    lines = []
    for prompt in prompts:
        for _ in range(per_prompt):
            brief, wordy = answer(rng, rng.randint(*short)), answer(rng, rng.randint(*long))
            chosen, rejected = (brief, wordy) if rng.random() < p_short else (wordy, brief)
            lines.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def mapl_file(path: Path, pairs: Path, *, seed: int = 0, n_instructions: int = 2, inter: int = 1) -> Path:
    augment_jsonl(pairs, path, seed=seed, n_instructions=n_instructions, inter_per_pair=inter)
    return path
