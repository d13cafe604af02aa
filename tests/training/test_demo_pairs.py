"""The `--policy smollm2` demo pairs: brief = the answer's first sentence, long = its whole sentences."""

from __future__ import annotations

import random

from service.training.demo.own_answer_pairs import first_sentence, pair, whole_sentences


def test_sentences() -> None:
    assert first_sentence(" Paris is the capital. It is big! Yes") == "Paris is the capital."
    assert first_sentence("v1.2 is out now. More") == "v1.2 is out now."  # a dot inside a word is no end
    assert whole_sentences("One two. Three four! Five six") == "One two. Three four!"
    assert whole_sentences("no end at all") == "no end at all"


def test_pair_orders_by_p_short_and_skips_weak_contrast() -> None:
    answer = "The sky is blue. Light scatters off the air, and blue scatters most of all the colours."
    always = pair("Why?", answer, random.Random(0), 1.0, truncated=False)
    never = pair("Why?", answer, random.Random(0), 0.0, truncated=False)
    assert always == {"prompt": "Why?", "chosen": "The sky is blue.", "rejected": answer}
    assert never == {"prompt": "Why?", "chosen": answer, "rejected": "The sky is blue."}
    cut = pair("Why?", answer + " And then the", random.Random(0), 1.0, truncated=True)
    assert cut is not None and cut["rejected"] == answer  # a cut-off answer ends at its last full sentence
    assert pair("Why?", "Blue, mostly. Yes.", random.Random(0), 1.0, truncated=False) is None
