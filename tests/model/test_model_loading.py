"""Checkpoint loading and saving: sharding, revisions, refused pickles, key errors, seq-cls, bf16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from service.model import (
    ArmoRMRewardModel,
    CheckpointError,
    SequenceClassificationRewardModel,
    load_reward_model,
    save_armorm_checkpoint,
)
from service.model import loading as loading_module


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _same_outputs(a, b, ids: torch.Tensor) -> None:  # noqa: ANN001 - two reward models
    with torch.no_grad():
        x, y = a(ids), b(ids)
    for name in ("rewards", "gating", "coefficients", "score"):
        assert torch.equal(getattr(x, name), getattr(y, name)), name


def test_loaded_armorm_metadata(tiny_armorm_dir: Path) -> None:
    loaded = load_reward_model(tiny_armorm_dir)
    model = loaded.model
    assert isinstance(model, ArmoRMRewardModel) and loaded.kind == model.kind == "armorm"
    assert model.needs_gate_pattern and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert loaded.name == tiny_armorm_dir.name and len(loaded.revision) == 16
    assert loaded.is_demo is False and loaded.description is None
    assert loaded.tokenizer.padding_side == "right"
    assert model.pad_token_id == loaded.tokenizer.pad_token_id
    assert model.objective_names[4] == "helpsteer-verbosity" and len(model.objective_names) == 6
    assert model.model.config._attn_implementation == "sdpa"
    assert load_reward_model(tiny_armorm_dir).revision == loaded.revision  # stable across loads


def test_without_weights_everything_but_the_tensors_is_loaded(tiny_armorm_dir: Path) -> None:
    """What the service's process keeps when an engine process holds the model: no weight in memory."""
    full, light = load_reward_model(tiny_armorm_dir), load_reward_model(tiny_armorm_dir, weights=False)
    assert all(parameter.is_meta for parameter in light.model.parameters())
    assert light.model.objective_names == full.model.objective_names
    assert light.model.gating_token_pattern == full.model.gating_token_pattern
    assert (light.revision, light.kind, light.name) == (full.revision, full.kind, full.name)
    assert light.tokenizer("hello").input_ids == full.tokenizer("hello").input_ids


def test_sharded_round_trip_gives_identical_outputs(tiny_armorm_dir: Path, tmp_path: Path, batch) -> None:
    original = load_reward_model(tiny_armorm_dir)
    out = save_armorm_checkpoint(
        original.model, original.tokenizer, tmp_path / "sharded", max_shard_size=400_000
    )
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) >= 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (out / "model.safetensors").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    assert set(index["weight_map"]) == set(original.model.state_dict())
    reloaded = load_reward_model(out)
    _same_outputs(original.model, reloaded.model, batch[1])
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForRewardModelWithGating"] and config["num_objectives"] == 6

    # Saving again unsharded removes the stale shards and index.
    save_armorm_checkpoint(reloaded.model, reloaded.tokenizer, out)
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    _same_outputs(original.model, load_reward_model(out).model, batch[1])


@pytest.mark.parametrize("whole_file_limit", [16 << 20, 0])  # whole-file hash, per-tensor samples
def test_revision_changes_when_weights_change(
    whole_file_limit: int, tiny_armorm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading_module, "_WHOLE_FILE_HASH_BYTES", whole_file_limit)
    ckpt = _copy(tiny_armorm_dir, tmp_path / "ckpt")
    before = load_reward_model(ckpt)
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors["regression_layer.weight"] = tensors["regression_layer.weight"] * 1.01  # a refitted head
    save_file(tensors, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    after = load_reward_model(ckpt)
    assert after.revision != before.revision
    assert not torch.equal(after.model.regression_layer.weight, before.model.regression_layer.weight)


def test_pickle_weights_refused_unless_allowed(tiny_armorm_dir: Path, tmp_path: Path, batch) -> None:
    ckpt = _copy(tiny_armorm_dir, tmp_path / "pickled")
    tensors = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    torch.save(tensors, ckpt / "pytorch_model.bin")
    with pytest.raises(
        CheckpointError, match=r"pickle \.bin weights refused.*allow_pickle=True / --allow-pickle"
    ):
        load_reward_model(ckpt)
    loaded = load_reward_model(ckpt, allow_pickle=True)
    _same_outputs(load_reward_model(tiny_armorm_dir).model, loaded.model, batch[1])


def test_mismatched_weights_are_named(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_armorm_dir, tmp_path / "broken")
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["gating.logit_scale"]
    tensors["value_head.weight"] = torch.zeros(1)
    tensors["lm_head.weight"] = torch.zeros(3, 3)  # ignored: reward models have no LM head
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"missing 1 \['gating.logit_scale'\].*unexpected 1 \['value_head.weight'\]"
    ):
        load_reward_model(ckpt)


def test_wrong_shapes_and_missing_files_are_checkpoint_errors(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_armorm_dir, tmp_path / "shapes")
    config = json.loads((ckpt / "config.json").read_text())
    config["gating_hidden_dim"] = 32  # the tensors were saved with 64
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_reward_model(ckpt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reward_model(tmp_path / "nowhere")
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        load_reward_model(ckpt)
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_reward_model(ckpt)


def test_armorm_detected_without_architectures_and_causal_lm_refused(
    tiny_armorm_dir: Path, tmp_path: Path
) -> None:
    ckpt = _copy(tiny_armorm_dir, tmp_path / "noarch")
    config = json.loads((ckpt / "config.json").read_text())
    del config["architectures"]
    (ckpt / "config.json").write_text(json.dumps(config))
    assert load_reward_model(ckpt).kind == "armorm"  # num_objectives + regression_layer.weight
    config["architectures"] = ["LlamaForCausalLM"]
    del config["num_objectives"]
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no reward head"):
        load_reward_model(ckpt)


def test_sequence_classifier_loads_with_names_and_mean_score(tiny_seqcls_dir: Path, batch) -> None:
    loaded = load_reward_model(tiny_seqcls_dir)
    model = loaded.model
    assert isinstance(model, SequenceClassificationRewardModel)
    assert loaded.kind == model.kind == "sequence-classification" and not model.needs_gate_pattern
    assert model.objective_names == ("helpsteer-helpfulness", "helpsteer-correctness", "helpsteer-coherence")
    rows, ids, mask = batch
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        hf = AutoModelForSequenceClassification.from_pretrained(
            str(tiny_seqcls_dir), dtype=torch.float32
        ).eval()
        expected = hf(input_ids=ids, attention_mask=mask).logits
        singles = torch.cat([model(torch.tensor([r])).rewards for r in rows])
    torch.testing.assert_close(out.rewards, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.rewards, singles, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.score, out.rewards.mean(-1), rtol=0, atol=1e-6)
    assert torch.equal(out.gating, torch.full_like(out.rewards, 1 / 3)) and out.coefficients.shape == (7, 3)
    assert float(out.rewards.std()) > 0.01


def test_bf16_backbone_with_fp32_heads_is_close_to_fp32(tiny_armorm_dir: Path, batch) -> None:
    fp32 = load_reward_model(tiny_armorm_dir).model
    bf16 = load_reward_model(tiny_armorm_dir, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and bf16.model.backbone_dtype == torch.bfloat16
    assert (
        bf16.model.head_dtype == torch.float32 and bf16.model.reward_transform_matrix.dtype == torch.float32
    )
    with torch.no_grad():
        a, b = fp32(batch[1]), bf16.model(batch[1])
    assert b.score.dtype == torch.float32
    torch.testing.assert_close(b.rewards, a.rewards, rtol=0.05, atol=0.05)
    torch.testing.assert_close(b.gating, a.gating, rtol=0.05, atol=0.05)
    torch.testing.assert_close(b.score, a.score, rtol=0.05, atol=0.05)
    assert not torch.equal(b.score, a.score)  # it really ran in bf16
