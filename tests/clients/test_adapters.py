"""Trainer adapters driven with each trainer's own calling convention, against the fake service."""

from __future__ import annotations

import asyncio
import importlib.util
import pickle

import httpx
import pytest
from fake_service import OBJECTIVES, FakeRewardService, fake_rewards

from clients.adapters import openrlhf, verl
from clients.adapters.trl import BatchScorer, paretorm_reward_funcs
from clients.errors import BadRequest


def _trl_funcs(fake: FakeRewardService, **kwargs):
    return paretorm_reward_funcs("http://rm", transport=httpx.MockTransport(fake), **kwargs)


def test_trl_one_call_per_batch_fanned_out_per_objective(fake: FakeRewardService) -> None:
    funcs = _trl_funcs(fake)
    assert [f.__name__ for f in funcs] == [f"paretorm_{o}" for o in OBJECTIVES] + ["paretorm_score"]
    # TRL repeats each prompt num_generations times in a row and passes dataset columns as kwargs.
    prompts = ["What is 2+2?"] * 3 + ["Name a colour."] * 3
    completions = ["4", "four", "5", "red", "blue", "a colour"]
    kwargs = {"completion_ids": [[1, 2]] * 6, "answer": ["4"] * 3 + ["red"] * 3, "trainer_state": object()}
    outputs = [f(prompts=prompts, completions=completions, **kwargs) for f in funcs]
    score_calls = [r for r in fake.requests if r.url.path == "/v1/score"]
    assert len(score_calls) == 1
    sent = fake.scored[0]
    assert [len(g.responses) for g in sent.groups] == [3, 3] and sent.items == []  # GRPO groups, prompt once
    for k, objective_rewards in enumerate(outputs[:-1]):
        assert objective_rewards == [fake_rewards(p, c)[k] for p, c in zip(prompts, completions, strict=True)]
    assert len(outputs[-1]) == 6 and all(isinstance(x, float) for x in outputs[-1])


def test_trl_conversational_batch(fake: FakeRewardService) -> None:
    funcs = _trl_funcs(fake, objectives=[OBJECTIVES[0]], include_score=False)
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    prompts = [prompt, prompt]
    completions = [
        [{"role": "assistant", "content": "hello"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "hey"}]}],
    ]
    (reward,) = [f(prompts, completions, completion_ids=[[1], [2]]) for f in funcs]
    assert reward == [fake_rewards(prompt, "hello")[0], fake_rewards(prompt, "hey")[0]]


def test_trl_functions_pickle_together_and_share_one_scorer() -> None:
    funcs = paretorm_reward_funcs("http://rm", objectives=OBJECTIVES)
    restored = pickle.loads(pickle.dumps(funcs))
    assert [f.__name__ for f in restored] == [f.__name__ for f in funcs]
    assert len({id(f.scorer) for f in restored}) == 1
    assert isinstance(restored[0].scorer, BatchScorer) and restored[0].scorer.url == "http://rm"


def test_trl_weights_add_a_weighted_function(fake: FakeRewardService) -> None:
    funcs = _trl_funcs(fake, weights=[1.0, 0.0, -1.0])
    assert funcs[-1].__name__ == "paretorm_weighted"
    (weighted,) = [funcs[-1](["p"], ["r"])]
    r = fake_rewards("p", "r")
    assert weighted == [pytest.approx(r[0] - r[2])]


def test_openrlhf_reward_func_file(monkeypatch: pytest.MonkeyPatch, fake: FakeRewardService) -> None:
    spec = importlib.util.spec_from_file_location("reward_func", openrlhf.REWARD_FUNC_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # exactly how OpenRLHF loads it
    monkeypatch.setattr(openrlhf, "client_from_env", lambda: _client(fake))
    monkeypatch.setattr(module, "client_from_env", lambda: _client(fake))
    out = module.reward_func(
        ["<user>q</s><assistant>a", "<user>q</s><assistant>b"], ["<user>q</s>"] * 2, [None, None]
    )
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert len(out["rewards"]) == 2 and set(out["extra_logs"]) == set(OBJECTIVES)


def _client(fake: FakeRewardService):
    from clients import RewardClient

    return RewardClient("http://rm", transport=httpx.MockTransport(fake))


def test_verl_compute_score_returns_objectives_and_aggregate(fake: FakeRewardService) -> None:
    options = {"client_options": {"transport": httpx.MockTransport(fake)}, "url": "http://rm"}
    result = verl.compute_score("helpsteer", "the answer", None, {"prompt": "the question"}, **options)
    assert set(result) == {"score", *OBJECTIVES}
    assert [result[o] for o in OBJECTIVES] == fake_rewards("the question", "the answer")
    batch = verl.compute_score_batch(
        ["d", "d"], ["a", "b"], [None, None], [{"question": "q"}, {"question": "q"}], **options
    )
    assert [b["helpsteer-helpfulness"] for b in batch] == [fake_rewards("q", x)[0] for x in "ab"]
    coro = verl.compute_score_async(
        "d", "a", None, {"raw_prompt": [{"role": "user", "content": "q"}]}, **options
    )
    assert (
        asyncio.run(coro)["helpsteer-helpfulness"] == fake_rewards([{"role": "user", "content": "q"}], "a")[0]
    )


def test_verl_without_prompt_says_how_to_fix() -> None:
    with pytest.raises(BadRequest, match="add the prompt to extra_info"):
        verl.compute_score("d", "a", None, {"answer": 1}, url="http://rm")
