"""Length preference pairs from the policy's own answers (the `--policy smollm2` MODPO / MAPL demo data).

For every prompt the untrained policy samples ``--samples`` answers (seeded); a pair is the answer's first
sentence (brief) and the whole answer (cut back to its last full sentence when it ran into
``--max-new-tokens``), the brief one chosen with probability ``--p-short``. Label noise keeps the data's
Bradley-Terry gap finite (``logit(p_short)``), so a margin objective (the service's ``verbosity``) can
outweigh it at a small MODPO weight. Both responses are the policy's own text, so a preference between
them moves where it ends its answers (pairs of made-up word strings, ``tests/training/preference_files``,
are learnt pair by pair by SmolLM2-135M and barely change its answers' length).

    python -m service.training.demo.own_answer_pairs service/training/demo/prompts.jsonl OUT.jsonl --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import torch

from service.training.data import read_prompts
from service.training.policy import load_policy, resolve_policy_dir

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def first_sentence(text: str) -> str:
    match = _SENTENCE_END.search(text.strip())
    return text.strip()[: match.end()] if match else text.strip()


def whole_sentences(text: str) -> str:
    """``text`` cut after its last sentence end (all of it if it has none)."""
    ends = list(_SENTENCE_END.finditer(text.strip()))
    return text.strip()[: ends[-1].end()] if ends else text.strip()


def pair(prompt: str, answer: str, rng: random.Random, p_short: float, truncated: bool) -> dict[str, str] | None:
    full = whole_sentences(answer) if truncated else answer.strip()
    brief = first_sentence(full)
    if len(brief.split()) < 3 or len(full.split()) < 2 * len(brief.split()):
        return None  # no clear length contrast
    chosen, rejected = (brief, full) if rng.random() < p_short else (full, brief)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--policy", default="smollm2")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--p-short", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    policy = load_policy(resolve_policy_dir(args.policy))
    tok = policy.tokenizer
    tok.padding_side = "left"
    rows = read_prompts(args.prompts)
    prompts = [r.as_messages()[-1]["content"] for r in rows]
    texts = [tok.apply_chat_template(r.as_messages(), add_generation_prompt=True, tokenize=False) for r in rows]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        out = policy.model.generate(**batch, do_sample=True, temperature=args.temperature, top_p=1.0,
                                    max_new_tokens=args.max_new_tokens, num_return_sequences=args.samples,
                                    pad_token_id=tok.pad_token_id)  # fmt: skip
    new = out[:, batch["input_ids"].shape[1] :]
    rng, lines = random.Random(args.seed), []
    for i, ids in enumerate(new):
        ids = ids.tolist()
        truncated = ids[-1] not in policy.eos_ids | {tok.pad_token_id}  # pad is eos here: ended early
        line = pair(prompts[i // args.samples], tok.decode(ids, skip_special_tokens=True), rng, args.p_short, truncated)
        lines += [line] if line else []
    args.out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"{len(lines)} pairs from {len(new)} answers -> {args.out}")


if __name__ == "__main__":
    main()
