"""Deterministic synthetic traffic for the benchmark, sized in *tokens* of the bench model's tokenizer.

Three shapes, all drawn from one seeded RNG and a fixed word list:
- chat items: a user prompt and an assistant response totalling ~336 tokens once chat-templated (the
  size the anchors were measured at);
- GRPO groups: one ~428-token prompt (counted through the assistant header, i.e. the part a backend can
  share) with G responses of 80-140 tokens each;
- long-tailed items: log-normal total lengths (median ~160 tokens, a few over 1000), the traffic on which
  length-sorted batching matters.

Lengths are hit by construction, not by trial: the byte-level BPE pre-tokenizer splits on spaces, so a
word's tokens do not depend on its neighbours and a text's length is the sum of its words' costs. The
template's own tokens are measured once on a sample conversation. Actual lengths are re-measured by the
caller (the service reports `num_tokens`) and printed in the report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WORDS = (
    "the a of to and in is it that for you with on as are be this was have not or by from at your can what "
    "how why when which who will would should could write explain answer question help helpful correct "
    "coherent complex verbose safe please thank sure here there list steps code python function return value "
    "error test model reward score objective prompt response assistant user system message word synonym "
    "beautiful simple short long detailed brief summary example because therefore however first second third "
    "finally number add subtract multiply divide equal sum total average data table file read open close run "
    "server request client batch token time fast slow good better best capital france paris city country "
    "river "
    "mountain weather today water fire earth air policy gradient advantage baseline group sample rollout"
).split()


@dataclass(frozen=True, slots=True)
class ChatItem:
    prompt: str
    response: str


@dataclass(frozen=True, slots=True)
class GrpoGroup:
    prompt: str
    responses: tuple[str, ...]


class TextMaker:
    """Makes texts of an exact token count for one tokenizer (see the module docstring for why it works)."""

    def __init__(self, tokenizer: Any, rng: random.Random) -> None:
        self._rng = rng
        self._tokenizer = tokenizer
        encoded = tokenizer([" " + word for word in WORDS] + ["."] + list(WORDS), add_special_tokens=False)[
            "input_ids"
        ]
        n = len(WORDS)
        self._word_cost = [len(ids) for ids in encoded[:n]]
        self._period_cost = len(encoded[n])
        self._first_cost = [len(ids) for ids in encoded[n + 1 :]]  # a text's first word has no leading space
        self._overhead = self._measure_overhead()

    def _measure_overhead(self) -> tuple[int, int]:
        """Template tokens (before the response's end, total) around a prompt and a response."""
        prompt, response = self.text(20), self.text(30)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        rendered = self._tokenizer.apply_chat_template(messages, tokenize=False)
        total = len(self._tokenizer(rendered, add_special_tokens=False)["input_ids"])
        # Tokens before the response's first character, read inside the whole conversation: a standalone
        # header can merge "\n\n" into one token where the conversation has two.
        offsets = self._tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        response_start = rendered.rindex(response)
        prefix_len = sum(1 for start, _ in offsets if start < response_start)
        return prefix_len - 20, total - 50

    @property
    def prompt_overhead(self) -> int:
        """Template tokens through the assistant header (what joins the prompt's shared prefix)."""
        return self._overhead[0]

    @property
    def total_overhead(self) -> int:
        return self._overhead[1]

    def text(self, tokens: int) -> str:
        """Sentences of seeded words costing exactly `tokens` tokens (>= 1) when tokenised alone."""
        words: list[str] = []
        cost = 0
        since_period = 0
        target = max(1, tokens)
        while cost < target:
            index = self._rng.randrange(len(WORDS))
            costs = self._word_cost if words else self._first_cost
            word_cost = costs[index]
            if since_period >= 12 and cost + self._period_cost <= target and target - cost > 2:
                words[-1] += "."
                cost += self._period_cost
                since_period = 0
                continue
            if cost + word_cost > target:
                # Fill the remainder with the cheapest words.
                cheap = [i for i, c in enumerate(costs) if c <= target - cost]
                if not cheap:
                    break
                index = self._rng.choice(cheap)
                word_cost = costs[index]
            words.append(WORDS[index])
            cost += word_cost
            since_period += 1
        return " ".join(words)


def chat_items(maker: TextMaker, rng: random.Random, count: int, mean_tokens: int = 336) -> list[ChatItem]:
    """Items whose templated length is uniform in mean_tokens +- 20; prompts take 60-100 tokens."""
    items = []
    for _ in range(count):
        total = rng.randint(mean_tokens - 20, mean_tokens + 20)
        prompt_tokens = rng.randint(60, 100)
        response_tokens = max(8, total - prompt_tokens - maker.total_overhead)
        items.append(ChatItem(maker.text(prompt_tokens), maker.text(response_tokens)))
    return items


def grpo_groups(
    maker: TextMaker, rng: random.Random, prompts: int, group: int, shared_tokens: int = 428
) -> list[GrpoGroup]:
    """`prompts` groups of `group` responses (80-140 tokens) sharing a prompt of `shared_tokens` tokens."""
    prompt_tokens = max(8, shared_tokens - maker.prompt_overhead)
    return [
        GrpoGroup(maker.text(prompt_tokens), tuple(maker.text(rng.randint(80, 140)) for _ in range(group)))
        for _ in range(prompts)
    ]


def long_tail_items(
    maker: TextMaker,
    rng: random.Random,
    count: int,
    median_tokens: int = 160,
    sigma: float = 0.9,
    max_tokens: int = 1000,
) -> list[ChatItem]:
    """Log-normal templated lengths, clipped to [48, max_tokens] so every item fits every engine."""
    items = []
    for _ in range(count):
        total = int(min(max_tokens, max(48, median_tokens * math.exp(rng.gauss(0.0, sigma)))))
        prompt_tokens = max(8, int(total * rng.uniform(0.15, 0.4)))
        response_tokens = max(8, total - prompt_tokens - maker.total_overhead)
        items.append(ChatItem(maker.text(prompt_tokens), maker.text(response_tokens)))
    return items


class WorkloadSource:
    """Hands out fresh, never-repeated traffic from one seeded stream.

    Each scenario gets its own items: vLLM's prefix cache would otherwise serve a second scenario's
    repeated texts from cache and the comparison would measure the cache, not the engine. The sequence of
    calls fixes the content, so one seed and one scenario order always give the same bytes.
    """

    def __init__(self, tokenizer: Any, seed: int) -> None:
        self._rng = random.Random(seed)
        self._maker = TextMaker(tokenizer, self._rng)

    def chat(self, count: int, mean_tokens: int = 336) -> list[ChatItem]:
        return chat_items(self._maker, self._rng, count, mean_tokens)

    def grpo(self, prompts: int, group: int, shared_tokens: int) -> list[GrpoGroup]:
        return grpo_groups(self._maker, self._rng, prompts, group, shared_tokens)

    def long_tail(self, count: int) -> list[ChatItem]:
        return long_tail_items(self._maker, self._rng, count)


def conversation(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def flatten_groups(groups: Sequence[GrpoGroup]) -> list[ChatItem]:
    """A GRPO batch as independent items (what a trainer sending one sample per request produces)."""
    return [ChatItem(group.prompt, response) for group in groups for response in group.responses]


def token_lengths(tokenizer: Any, items: Sequence[ChatItem]) -> list[int]:
    """Templated token counts, as the service computes them."""
    texts = rendered_texts(tokenizer, items)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def rendered_texts(tokenizer: Any, items: Sequence[ChatItem]) -> list[str]:
    """Chat-templated texts (what vLLM's `/classify` and OpenRLHF's `/get_reward` receive)."""
    return [
        str(tokenizer.apply_chat_template(conversation(item.prompt, item.response), tokenize=False))
        for item in items
    ]
