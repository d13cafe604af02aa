"""The native ArmoRM forward equals an independent re-statement of the model card's forward.

The reference below uses only transformers' ``LlamaModel.from_pretrained``, the raw safetensors and
the published semantics (armorm.md §1.4) — no project code — so a wrong module name, transform
direction, softmax axis, temperature or position rule shows up as a mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaModel

from service.model import (
    ArmoRMHeadConfig,
    ArmoRMRewardModel,
    GatePatternNotFound,
    load_reward_model,
    save_armorm_checkpoint,
)

LLAMA3_TOKEN_PATTERN = [128009, 128006, 78191, 128007, 271]


class ReferenceArmoRM:
    """The model card's ``LlamaForRewardModelWithGating.forward``, restated in plain torch."""

    def __init__(self, ckpt: Path) -> None:
        self.cfg = json.loads((ckpt / "config.json").read_text())
        self.backbone = LlamaModel.from_pretrained(str(ckpt), dtype=torch.float32).eval()
        t = load_file(str(ckpt / "model.safetensors"))
        self.w = t["regression_layer.weight"]
        self.transform = t["reward_transform_matrix"]
        self.logit_scale = t["gating.logit_scale"]
        n = sum(1 for k in t if k.startswith("gating.layers.") and k.endswith(".weight"))
        self.gate_layers = [(t[f"gating.layers.{i}.weight"], t[f"gating.layers.{i}.bias"]) for i in range(n)]

    def find_token_for_gating(self, lst: list[int]) -> int:
        pattern = self.cfg.get("gating_token_pattern", LLAMA3_TOKEN_PATTERN)  # the card hard-codes it
        for j in range(len(lst) - len(pattern), -1, -1):
            if lst[j : j + len(pattern)] == pattern:
                return j
        raise ValueError("Token pattern not found in the list.")

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.backbone(input_ids).last_hidden_state
        b, length = input_ids.shape
        pad = self.cfg["pad_token_id"]
        reward_idx = [((row.index(pad) if pad in row else 0) - 1) % length for row in input_ids.tolist()]
        gate_idx = [self.find_token_for_gating(row) for row in input_ids.tolist()]
        rewards = h[torch.arange(b), reward_idx] @ self.w.T
        x = h[torch.arange(b), gate_idx]
        for i, (w, bias) in enumerate(self.gate_layers):
            x = x @ w.T + bias
            if i < len(self.gate_layers) - 1:
                x = torch.relu(x)
        gating = torch.softmax(x / self.cfg.get("gating_temperature", 10), dim=1) * self.logit_scale[0]
        score = torch.sum(gating * (rewards @ self.transform), dim=1)
        return {"rewards": rewards, "gating": gating, "score": score}


@pytest.fixture(scope="module")
def reference(tiny_armorm_dir: Path) -> ReferenceArmoRM:
    return ReferenceArmoRM(tiny_armorm_dir)


@pytest.fixture(scope="module")
def native(tiny_armorm_dir: Path):  # noqa: ANN201 - the loaded ArmoRMRewardModel
    return load_reward_model(tiny_armorm_dir).model


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [1, 7])
def test_native_forward_matches_reference(size: int, batch, pad_rows, native, reference) -> None:
    rows, _, _ = batch
    ids, _ = pad_rows(rows[:size], native.pad_token_id)
    with torch.no_grad():
        got = native(ids)
    want = reference(ids)
    _close(got.rewards, want["rewards"])
    _close(got.gating, want["gating"])
    _close(got.score, want["score"])
    # The model card's closed form: score == sum(rewards * coefficients).
    _close((got.rewards * got.coefficients).sum(-1), got.score)
    assert got.score.shape == (size,) and got.rewards.dtype == torch.float32
    # The gate is not uniform and its mass is logit_scale, so those parts of the maths are exercised.
    assert float(got.gating.std()) > 0.05
    _close(got.gating.sum(-1), native.gating.logit_scale.expand(size))


def test_padded_batch_equals_one_at_a_time(batch, native) -> None:
    rows, ids, mask = batch
    with torch.no_grad():
        batched = native(ids)
        masked = native(ids, attention_mask=mask)
        singles = [native(torch.tensor([r])) for r in rows]
    for name in ("rewards", "gating", "coefficients", "score"):
        single = torch.cat([getattr(s, name) for s in singles])
        _close(getattr(batched, name), single)
        _close(getattr(masked, name), single)
    as_rows = batched.to_lists()
    assert len(as_rows) == len(batched) == 7 and as_rows[2] == batched.row(2)
    assert as_rows[2].score == pytest.approx(float(batched.score[2])) and len(as_rows[2].gating) == 6


def test_multi_turn_gate_reads_the_last_assistant_header(batch, native) -> None:
    rows, _, _ = batch
    row = rows[3]  # two assistant turns
    pattern = list(native.gating_token_pattern)
    starts = [j for j in range(len(row) - len(pattern) + 1) if row[j : j + len(pattern)] == pattern]
    assert len(starts) == 2
    hidden, _ = native.hidden_states(torch.tensor([row]))
    with torch.no_grad():
        direct = native.heads(hidden[:, -1], hidden[:, starts[-1]])
        out = native(torch.tensor([row]))
    _close(out.score, direct.score)


def test_kv_cache_continuation_gives_the_same_hidden_states(batch, native) -> None:
    """What an engine with prefix caching relies on: hidden_states forwards the cache arguments."""
    row = torch.tensor([batch[0][2]])
    split = row.shape[1] // 2
    with torch.no_grad():
        full, _ = native.hidden_states(row)
        _, cache = native.hidden_states(row[:, :split], use_cache=True)
        assert cache is not None
        tail, _ = native.hidden_states(
            row[:, split:],
            position_ids=torch.arange(split, row.shape[1])[None],
            past_key_values=cache,
            use_cache=True,
        )
    _close(tail, full[:, split:])


def test_conversation_ending_with_a_user_turn_is_rejected(encode, native) -> None:
    ids = torch.tensor([encode([{"role": "user", "content": "Hello there, who are you?"}])])
    with pytest.raises(GatePatternNotFound, match="must end with an assistant turn"):
        native(ids)


@pytest.fixture(scope="module")
def hub_like_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """Llama-3 vocabulary and the hub's config keys: no objective names, no gate pattern, auto_map."""
    config = LlamaConfig(
        vocab_size=128257, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, pad_token_id=128256, rope_theta=500000.0,
    )  # fmt: skip
    torch.manual_seed(3)
    model = ArmoRMRewardModel(
        config, ArmoRMHeadConfig.from_dict({"num_objectives": 19, "pad_token_id": 128256})
    )
    with torch.no_grad():
        model.regression_layer.weight.normal_()
        model.gating.layers[-1].weight.mul_(30.0)
        model.reward_transform_matrix[4] -= 0.2
        model.gating.logit_scale.fill_(2.0)
    out = save_armorm_checkpoint(model, tiny_tokenizer, tmp_path_factory.mktemp("hub-like"))
    cfg = json.loads((out / "config.json").read_text())
    for key in (
        "objective_names",
        "gating_token_pattern",
        "gating_temperature",
        "gating_hidden_dim",
        "dtype",
    ):
        del cfg[key]
    cfg.update(
        torch_dtype="bfloat16",
        _name_or_path="RLHFlow/ArmoRM-Llama3-8B-v0.1",
        auto_map={"AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"},
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
    )
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_hub_style_config_loads_with_reference_defaults(hub_like_dir: Path) -> None:
    loaded = load_reward_model(hub_like_dir)
    model = loaded.model
    assert loaded.name == "RLHFlow/ArmoRM-Llama3-8B-v0.1"
    assert model.objective_names[10] == "beavertails-is_safe" and len(model.objective_names) == 19
    assert model.gating_token_pattern == tuple(LLAMA3_TOKEN_PATTERN) and model.pad_token_id == 128256
    user, assistant = [128006, 882, 128007, 271], [128006, 78191, 128007, 271]
    rows = [
        [128000, *user, 40, 1093, 128009, *assistant, 50, 51, 52, 128009],
        [128000, *user, 7, 128009, *assistant, 9, 128009, *user, 11, 12, 128009, *assistant, 13, 128009],
    ]
    ids = torch.full((2, len(rows[1])), 128256)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    with torch.no_grad():
        got = model(ids)
    want = ReferenceArmoRM(hub_like_dir)(ids)
    _close(got.rewards, want["rewards"])
    _close(got.gating, want["gating"])
    _close(got.score, want["score"])
    assert float(got.gating.max() - got.gating.min()) > 0.02  # a gate that is not uniform
