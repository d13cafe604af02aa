"""End to end on a tiny random Llama backbone: fit, reload as the server does, score, compare."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from service.fitting.cli import main as fit_main
from service.fitting.embed import BackboneEmbedder, cache_key, embed_with_cache
from service.fitting.encoding import EncodedItem, encode_conversations
from service.model.gate_pattern import derive_gate_pattern
from service.fitting.gating_fit import GatingFitConfig
from service.fitting.package import exact_storage_dtype
from service.fitting.pipeline import FitConfig, FitOutcome, run_fitting
from service.model.loading import load_reward_model
from service.model.tiny import build_tiny_tokenizer
from service.scoring.encoding import ChatEncoder, EncodingPolicy

WORDS = "the capital of france is paris write a python function that returns sum list numbers sure here".split()


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A causal-LM directory, as a user would bring: LlamaForCausalLM + tokenizer with a chat template."""
    out = tmp_path_factory.mktemp("backbone")
    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    with (out / "ratings.jsonl").open("w") as fh:
        for i in range(40):
            reply = text(rng.randint(2, 12))
            ratings = {"helpsteer-helpfulness": rng.random(), "helpsteer-verbosity": len(reply) / 60,
                       "beavertails-is_safe": None if i % 3 == 0 else float(i % 2)}  # fmt: skip
            msgs = [{"role": "user", "content": text(5)}, {"role": "assistant", "content": reply}]
            fh.write(json.dumps({"messages": msgs, "ratings": ratings}) + "\n")
    with (out / "prefs.jsonl").open("w") as fh:
        for _ in range(30):
            fh.write(json.dumps({"prompt": text(6), "chosen": text(rng.randint(2, 10)), "rejected": text(rng.randint(2, 10))}) + "\n")
    return out


def test_generic_gate_pattern_matches_the_llama3_derivation() -> None:
    tok = build_tiny_tokenizer()
    pattern = derive_gate_pattern(tok)
    assert tok.decode(list(pattern)) == "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def _fit(backbone: Path, data_dir: Path, tmp_path: Path, *, gating_steps: int) -> FitOutcome:
    """`run_fitting` on the module's data with a small gating network, into `tmp_path`."""
    cfg = FitConfig(
        backbone=backbone, ratings=data_dir / "ratings.jsonl", preferences=data_dir / "prefs.jsonl",
        out=tmp_path / "fitted", cache_dir=tmp_path / "cache", progress=False, batch_tokens=256,
        gating=GatingFitConfig(steps=gating_steps, batch_size=16, hidden_dim=16, n_hidden=1),
    )  # fmt: skip
    return run_fitting(cfg)


def test_fit_serve_score_equal_in_process(backbone_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    outcome = _fit(backbone_dir, data_dir, tmp_path, gating_steps=20)

    loaded = load_reward_model(outcome.out)
    assert loaded.kind == "armorm"
    assert loaded.model.objective_names == ("helpsteer-helpfulness", "helpsteer-verbosity", "beavertails-is_safe")
    assert torch.equal(loaded.model.reward_transform_matrix, outcome.debias.transform)
    assert torch.equal(loaded.model.regression_layer.weight, outcome.regression.weight)

    convs = [[{"role": "user", "content": "the capital of france"}, {"role": "assistant", "content": r}]
             for r in ("paris", "sure here is a python function that returns the sum")]  # fmt: skip
    encoder = ChatEncoder(loaded.tokenizer, gate_pattern=loaded.model.gating_token_pattern, bos_token_id=None)
    encoded = encoder.encode_conversations(convs, EncodingPolicy(4096, "error"), labels=["a", "b"])
    pad = loaded.model.pad_token_id
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.tensor([list(e.input_ids) + [pad] * (width - len(e.input_ids)) for e in encoded])
    with torch.no_grad():
        served = loaded.model(ids, attention_mask=(ids != pad).long())

    # In process: the fitting's own embeddings through the fitted heads.
    items, _ = encode_conversations(loaded.tokenizer, convs, outcome.model.gating_token_pattern, path="t", lines=[1, 2], max_tokens=None)
    emb = BackboneEmbedder(outcome.model.model, pad_id=pad).embed([i for i in items if i is not None])
    with torch.no_grad():
        rewards = emb.last.float() @ outcome.regression.weight.T
        weights = outcome.gating.gating(emb.gate.float())
        score = (weights * (rewards @ outcome.debias.transform)).sum(-1)
    assert [list(e.input_ids) for e in encoded] == [list(i.ids) for i in items if i is not None]
    torch.testing.assert_close(served.rewards, rewards, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(served.score, score, atol=1e-4, rtol=1e-4)

    report = json.loads((outcome.out / "report.json").read_text())
    assert [s["objective"] for s in report["stage1"]] == list(loaded.model.objective_names)
    assert report["debias"]["verbosity_objective"] == "helpsteer-verbosity"
    assert report["stage2"]["n_val"] == 6 and len(report["gating_samples"]["weights"]) == 6
    assert (outcome.out / "report.png").stat().st_size > 10_000


class _ExplodingBackbone(torch.nn.Module):
    def forward(self, **_: object) -> None:
        raise AssertionError("the cache should have answered")


def test_embedding_cache_resumes_without_recomputing(backbone_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(backbone_dir))
    convs = [[{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "a " * i}] for i in range(1, 8)]
    items = [i for i in encode_conversations(tok, convs, derive_gate_pattern(tok), path="t", lines=list(range(7)), max_tokens=None)[0] if i]
    key = cache_key("fp", torch.float32, items)
    real = BackboneEmbedder(AutoModel.from_pretrained(str(backbone_dir)), pad_id=tok.pad_token_id, batch_tokens=64)
    first = embed_with_cache(real, items[:7], cache_root=tmp_path, name="r", key=key, shard_size=3, progress=False)
    shards = sorted((tmp_path / f"r-{key}").glob("shard-*.safetensors"))
    assert len(shards) == 3
    shards[-1].unlink()  # an interrupted run: the last shard never got written
    partial = BackboneEmbedder(_BackboneAfter(real.backbone, allowed=1), pad_id=tok.pad_token_id)
    again = embed_with_cache(partial, items, cache_root=tmp_path, name="r", key=key, shard_size=3, progress=False)
    torch.testing.assert_close(again.last, first.last)
    torch.testing.assert_close(again.gate, first.gate)
    cached = embed_with_cache(BackboneEmbedder(_ExplodingBackbone(), pad_id=0), items, cache_root=tmp_path,
                              name="r", key=key, shard_size=3, progress=False)  # fmt: skip
    assert torch.equal(cached.last, again.last)
    # Unpadded single forwards agree with the batched, padded ones.
    one = BackboneEmbedder(real.backbone, pad_id=tok.pad_token_id, batch_tokens=1).embed(items)
    torch.testing.assert_close(one.last, first.last, atol=1e-5, rtol=1e-5)


class _BackboneAfter(torch.nn.Module):
    """Delegates to a real backbone for ``allowed`` forwards, then fails: proves only missing shards run."""

    def __init__(self, inner: torch.nn.Module, allowed: int) -> None:
        super().__init__()
        self.inner, self.left = inner, allowed

    def forward(self, **kwargs: object) -> object:
        if self.left == 0:
            raise AssertionError("recomputed a cached shard")
        self.left -= 1
        return self.inner(**kwargs)


def test_cli_reports_bad_data_with_file_and_line(data_dir: Path, backbone_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "ratings": {"x": 1}}) + "\n")
    rc = fit_main(["--backbone", str(backbone_dir), "--ratings", str(bad), "--preferences", str(data_dir / "prefs.jsonl"),
                   "--out", str(tmp_path / "o"), "--no-progress"])  # fmt: skip
    assert rc == 2
    assert f"{bad}:1: 'messages' has no assistant turn at the end" in capsys.readouterr().err


def test_a_bfloat16_backbone_fitted_in_float32_is_stored_as_bfloat16_and_loads_the_same(
    backbone_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The embedded default model's case: its backbone arrives in bfloat16 and is fitted in float32 on CPUs
    without fast bfloat16. Stored as held it took twice the bytes for the same values (a 543 MB image layer
    instead of 270 MB); stored as bfloat16, it loads back in float32 to exactly the model that was fitted."""
    source = tmp_path / "bf16-backbone"
    LlamaForCausalLM.from_pretrained(str(backbone_dir), dtype=torch.bfloat16).save_pretrained(str(source))
    AutoTokenizer.from_pretrained(str(backbone_dir)).save_pretrained(str(source))
    outcome = _fit(source, data_dir, tmp_path, gating_steps=5)
    assert outcome.model.backbone_dtype == torch.float32, "fitted in float32"

    with safe_open(str(outcome.out / "model.safetensors"), framework="pt") as stored:
        dtypes = {key: stored.get_slice(key).get_dtype() for key in stored.keys()}  # noqa: SIM118
    assert {dtype for key, dtype in dtypes.items() if key.startswith("model.")} == {"BF16"}
    heads = {dtype for key, dtype in dtypes.items() if not key.startswith("model.")}
    assert heads == {"F32"}, "the heads as fitted"
    assert json.loads((outcome.out / "config.json").read_text())["dtype"] == "bfloat16"

    loaded = load_reward_model(outcome.out, dtype=torch.float32).model.state_dict()
    fitted = outcome.model.state_dict()
    assert loaded.keys() == fitted.keys()
    assert all(torch.equal(loaded[key], fitted[key]) for key in fitted), "every tensor back bit for bit"


def test_the_storage_dtype_is_the_narrowest_that_holds_every_value() -> None:
    torch.manual_seed(0)
    random_fp32 = torch.nn.Linear(8, 8)
    assert exact_storage_dtype(random_fp32) == torch.float32
    from_bf16 = torch.nn.Linear(8, 8).to(torch.bfloat16).to(torch.float32)
    assert exact_storage_dtype(from_bf16) == torch.bfloat16
    from_fp16 = torch.nn.Linear(8, 8).to(torch.float16).to(torch.float32)  # 10-bit mantissas: not bfloat16
    assert exact_storage_dtype(from_fp16) == torch.float16
    assert exact_storage_dtype(torch.nn.Linear(8, 8).to(torch.bfloat16)) == torch.bfloat16, "already narrow"
