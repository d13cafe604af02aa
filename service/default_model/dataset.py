"""Seeded generator of the default model's training and held-out data; it made the shipped files.

``python -m service.default_model.dataset`` rewrites ``service/default_model/data/*.jsonl``;
``--check`` only verifies that the shipped files equal a fresh generation (the test suite does the same).
Nothing here uses the network or a language model: prompts and responses are assembled from the fixed
text in ``banks.py`` and the instructions in ``constraints.py``, and every rating comes from the rules in
``labels.py``, which run the project's judges on the final text.

Files (the ``paretorm fit`` formats of ``service/fitting/data.py``, plus a ``meta`` field the fitter
ignores and the tests use to re-check labels):

* ``ratings.jsonl`` — ``RATINGS`` rated conversations over the training banks;
* ``preferences.jsonl`` — ``PREFERENCES`` chosen/rejected pairs over the training banks;
* ``heldout.jsonl`` — preference pairs over the held-out quarter of the banks (never used in fitting).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.default_model import banks
from service.default_model.banks import Fact
from service.default_model.constraints import FORMATS, INSTRUCTIONS, Constraint
from service.default_model.labels import is_refusal, judges_pass, label

DATA_SEED = 20261127
RATINGS = 280
PREFERENCES = 160
FILES = ("ratings.jsonl", "preferences.jsonl", "heldout.jsonl")
_KINDS = ("instruction", "format", "plain", "harmful")
_RATING_MIX = (0.32, 0.16, 0.28, 0.24)
_PREFERENCE_MIX = (0.34, 0.18, 0.24, 0.24)


def shipped_dir() -> Path:
    """Where the generated files ship inside the package."""
    return Path(__file__).with_name("data")


def response_ladder(fact: Fact) -> list[str]:
    """Answers to ``fact.question`` of increasing length: one sentence, two, three, three plus filler."""
    full = " ".join((fact.answer, *fact.more))
    return [
        fact.answer,
        f"{fact.answer} {fact.more[0]}",
        full,
        " ".join((banks.FILLER[0], full, *banks.FILLER[5:7])),
    ]


def refusal(rng: random.Random) -> str:
    parts = [rng.choice(banks.REFUSALS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(banks.REFUSAL_REASONS))
    if rng.random() < 0.5:
        parts.append(rng.choice(banks.REFUSAL_ALTERNATIVES))
    return " ".join(parts)


def compliance(rng: random.Random) -> str:
    steps = banks.COMPLIANCE_STEPS[: rng.randint(2, len(banks.COMPLIANCE_STEPS))]
    return " ".join((rng.choice(banks.COMPLIANCE_OPENINGS), *steps))


class _Prompt:
    """One prompt with its judges and the named responses the generator may pick for it."""

    def __init__(
        self, kind: str, text: str, judges: list[dict], responses: dict[str, str], detail: str
    ) -> None:
        self.kind, self.text, self.judges, self.responses, self.detail = kind, text, judges, responses, detail

    @property
    def harmful(self) -> bool:
        return self.kind == "harmful"

    def meta(self, **extra: str) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "judges": self.judges, **extra}

    def labels(self, response: str) -> dict:
        return label(self.text, self.responses[response], judges=self.judges, harmful=self.harmful,
                     wants_format=self.kind == "format")  # fmt: skip


def _constrained(kind: str, pool: tuple[Constraint, ...], facts: tuple, rng: random.Random) -> _Prompt:
    fact, constraint = rng.choice(facts), rng.choice(pool)
    built = constraint.build(fact, rng)
    responses = {"satisfying": built.satisfying, "violating": built.violating, "refusal": refusal(rng)}
    return _Prompt(kind, f"{fact.question} {built.instruction}", built.judges, responses, constraint.name)


def _plain(facts: tuple, rng: random.Random) -> _Prompt:
    fact = rng.choice(facts)
    short, medium, long, padded = response_ladder(fact)
    responses = {"short": short, "medium": medium, "long": long, "padded": padded, "refusal": refusal(rng)}
    return _Prompt("plain", fact.question, [], responses, fact.topic)


def _harmful(requests: tuple, rng: random.Random) -> _Prompt:
    return _Prompt(
        "harmful", rng.choice(requests), [], {"refusal": refusal(rng), "compliance": compliance(rng)}, ""
    )


def _sample_prompt(kind: str, heldout: bool, rng: random.Random) -> _Prompt:
    facts, requests = banks.split(banks.BENIGN, heldout), banks.split(banks.HARMFUL, heldout)
    if kind == "instruction":
        return _constrained(kind, INSTRUCTIONS, facts, rng)
    if kind == "format":
        return _constrained(kind, FORMATS, facts, rng)
    return _plain(facts, rng) if kind == "plain" else _harmful(requests, rng)


def _check(prompt: _Prompt, name: str) -> None:
    """Refuse to emit a response whose judged label contradicts how it was built (a generator bug)."""
    text = prompt.responses[name]
    refused = is_refusal(prompt.text, text)
    if refused != (name == "refusal"):
        raise RuntimeError(
            f"refusal judge says {refused} for the {name!r} response to {prompt.text!r}: {text!r}"
        )
    if prompt.kind in ("instruction", "format") and name != "refusal":
        if judges_pass(prompt.text, text, prompt.judges) != (name == "satisfying"):
            raise RuntimeError(f"judges {prompt.judges} disagree with the {name!r} response {text!r}")


def _rating_line(prompt: _Prompt, rng: random.Random) -> dict:
    weights = {"instruction": (0.45, 0.45, 0.1), "format": (0.45, 0.45, 0.1)}
    names = list(prompt.responses)
    name = rng.choices(names, weights=weights.get(prompt.kind, [1.0] * len(names)))[0]
    _check(prompt, name)
    messages = [
        {"role": "user", "content": prompt.text},
        {"role": "assistant", "content": prompt.responses[name]},
    ]
    return {"messages": messages, "ratings": prompt.labels(name), "meta": prompt.meta(response=name)}


def _pair(prompt: _Prompt, rng: random.Random) -> tuple[str, str]:
    """(chosen, rejected) response names; the preference each kind encodes is written in the README note."""
    if prompt.kind in ("instruction", "format"):
        return "satisfying", ("violating" if rng.random() < 0.85 else "refusal")
    if prompt.kind == "harmful":
        return "refusal", "compliance"
    if rng.random() < 0.3:
        return "long", "padded"  # the same content with filler sentences added
    return rng.choice(("short", "medium", "long")), "refusal"


def _pair_line(prompt: _Prompt, rng: random.Random) -> dict:
    chosen, rejected = _pair(prompt, rng)
    _check(prompt, chosen)
    _check(prompt, rejected)
    return {
        "prompt": prompt.text, "chosen": prompt.responses[chosen], "rejected": prompt.responses[rejected],
        "meta": prompt.meta(chosen=chosen, rejected=rejected),
    }  # fmt: skip


def _unique(n: int, make: Callable[[], dict], key: Callable[[dict], str]) -> list[dict]:
    out: list[dict] = []
    seen: set[str] = set()
    for _ in range(n * 50):
        line = make()
        if key(line) not in seen:
            seen.add(key(line))
            out.append(line)
            if len(out) == n:
                return out
    raise RuntimeError(f"could only make {len(out)} distinct lines of {n}; add text to banks.py")


def _heldout(rng: random.Random) -> list[dict]:
    """Every held-out fact: a plain pair, two instruction pairs, a format pair; every request: two pairs."""
    lines: list[dict] = []
    for fact in banks.split(banks.BENIGN, heldout=True):
        prompts = [
            _plain((fact,), rng),
            _constrained("instruction", INSTRUCTIONS, (fact,), rng),
            _constrained("instruction", INSTRUCTIONS, (fact,), rng),
            _constrained("format", FORMATS, (fact,), rng),
        ]
        for prompt in prompts:
            line = _pair_line(prompt, rng)
            if prompt.kind == "plain":  # held-out plain pairs always test answering vs refusing
                line = {
                    **line,
                    "chosen": prompt.responses["medium"],
                    "meta": prompt.meta(chosen="medium", rejected="refusal"),
                }
                line["rejected"] = prompt.responses["refusal"]
            lines.append(line)
    for request in banks.split(banks.HARMFUL, heldout=True):
        for _ in range(2):
            lines.append(_pair_line(_harmful((request,), rng), rng))
    return lines


def generate(seed: int = DATA_SEED) -> dict[str, list[dict]]:
    """All three files' lines, by file name. The same seed gives the same lines on every machine."""
    rng = random.Random(seed)

    def kind(mix: tuple[float, ...]) -> str:
        return rng.choices(_KINDS, weights=mix)[0]

    ratings = _unique(RATINGS, lambda: _rating_line(_sample_prompt(kind(_RATING_MIX), False, rng), rng),
                      lambda line: json.dumps(line["messages"]))  # fmt: skip
    prefs = _unique(PREFERENCES, lambda: _pair_line(_sample_prompt(kind(_PREFERENCE_MIX), False, rng), rng),
                    lambda line: json.dumps([line["prompt"], line["chosen"], line["rejected"]]))  # fmt: skip
    return {"ratings.jsonl": ratings, "preferences.jsonl": prefs, "heldout.jsonl": _heldout(rng)}


def render(lines: list[dict]) -> str:
    return "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)


def write(out_dir: str | Path, seed: int = DATA_SEED) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, lines in generate(seed).items():
        (out / name).write_text(render(lines), encoding="utf-8")
        paths[name] = out / name
    return paths


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.default_model.dataset", description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=shipped_dir(), help="output folder (default: the shipped data)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare the files in --out with a fresh generation"
    )
    args = parser.parse_args(argv)
    if args.check:
        fresh = generate()
        stale = [n for n in FILES if _read(args.out / n) != render(fresh[n])]
        if stale:
            hint = "run `python -m service.default_model.dataset`"
            print(f"{args.out}: {stale} differ from the generator; {hint}", file=sys.stderr)  # noqa: T201
            return 1
        return 0
    for path in write(args.out).values():
        print(f"wrote {path} ({sum(1 for _ in path.open())} lines)")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
