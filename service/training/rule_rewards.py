"""Trainer-side rule rewards: objectives computed from the rollout itself, named and logged like the service's.

The papers use such rewards beside model rewards (PAMA's length reward ``clip(l / 140, lo, hi)``,
algorithms.md §1.8). They depend on the *policy's* tokenizer, so they are computed where the token ids
are: here, not in the reward service. Length is counted in generated tokens ([our reading]: the paper does
not say tokens or characters; TRL-style code counts tokens).

Spec syntax (`--rule-reward`): ``[NAME=]KIND[:ARG...]``
- ``length[:SCALE[:LOW:HIGH]]`` -> ``clip(tokens / SCALE, LOW, HIGH)``; defaults 140, 0.5, 1.5 (PAMA's IMDb
  setting, ``np.clip(l/140, 70/140, 210/140)``).
- ``brevity[:SCALE]`` -> ``1 - min(tokens / SCALE, 1)``; default 140: shorter is better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.training.config import ConfigError

RuleFunction = Callable[[int], float]


@dataclass(frozen=True)
class RuleReward:
    name: str
    spec: str
    function: RuleFunction

    def __call__(self, num_tokens: int) -> float:
        return self.function(num_tokens)


def _numbers(args: Sequence[str], spec: str) -> list[float]:
    try:
        return [float(a) for a in args]
    except ValueError:
        raise ConfigError(f"--rule-reward {spec!r}: arguments must be numbers") from None


def _length(args: list[float], spec: str) -> RuleFunction:
    if len(args) not in (0, 1, 3):
        raise ConfigError(f"--rule-reward {spec!r}: use length, length:SCALE or length:SCALE:LOW:HIGH")
    scale, low, high = args + [140.0, 0.5, 1.5][len(args) :]
    if scale <= 0 or low > high:
        raise ConfigError(f"--rule-reward {spec!r}: SCALE must be > 0 and LOW <= HIGH")
    return lambda n: min(max(n / scale, low), high)


def _brevity(args: list[float], spec: str) -> RuleFunction:
    if len(args) > 1 or (args and args[0] <= 0):
        raise ConfigError(f"--rule-reward {spec!r}: use brevity or brevity:SCALE with SCALE > 0")
    scale = args[0] if args else 140.0
    return lambda n: 1.0 - min(n / scale, 1.0)


_KINDS: dict[str, Callable[[list[float], str], RuleFunction]] = {"length": _length, "brevity": _brevity}


def parse_rule(spec: str) -> RuleReward:
    """Parse one ``[NAME=]KIND[:ARG...]`` spec; the message lists the kinds when it is unknown."""
    name, _, body = spec.rpartition("=")
    kind, *args = body.split(":")
    if kind not in _KINDS:
        raise ConfigError(f"--rule-reward {spec!r}: unknown kind {kind!r}; known: {sorted(_KINDS)}")
    return RuleReward(name or kind, spec, _KINDS[kind](_numbers(args, spec), spec))


def parse_rules(specs: Sequence[str]) -> list[RuleReward]:
    rules = [parse_rule(s) for s in specs]
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"--rule-reward names must be distinct (got {names}); name them NAME=KIND")
    return rules
