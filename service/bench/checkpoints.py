"""The benchmark's model, built on the fly, and the same backbone as a checkpoint vLLM can serve.

The ArmoRM-layout checkpoint comes from `build_tiny_armorm` (random, seeded). vLLM's pooling server
cannot load ArmoRM heads, so it gets a `LlamaForSequenceClassification` directory holding the *same*
`model.*` tensors plus `score.weight` = our regression layer (K, H): vLLM's raw `/classify` output is then
exactly our per-objective rewards before gating, on the same backbone, dtype and tokens.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from service.model.config import ARMORM_OBJECTIVES
from service.model.tiny import build_tiny_armorm

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
_ARMORM_CONFIG_KEYS = (
    "num_objectives",
    "objective_names",
    "gating_token_pattern",
    "gating_hidden_dim",
    "gating_n_hidden",
    "gating_temperature",
    "auto_map",
    "paretorm_demo",
    "paretorm_description",
)


@dataclass(frozen=True, slots=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    objectives: int

    def describe(self) -> str:
        return (
            f"random Llama backbone hidden {self.hidden}, {self.layers} layers, {self.heads} heads "
            f"(head_dim {self.hidden // self.heads}), intermediate {3 * self.hidden}, "
            f"{self.objectives} regression heads"
        )


def objective_names(count: int) -> tuple[str, ...]:
    """ArmoRM's 19 names first, then numbered extras (so any count works)."""
    names = list(ARMORM_OBJECTIVES[:count])
    names += [f"objective-{i}" for i in range(len(names), count)]
    return tuple(names)


def build_bench_model(out_dir: Path, shape: ModelShape, seed: int) -> Path:
    """Write the ArmoRM-layout bench checkpoint; vLLM's CPU attention needs head_dim in {32, 64, 128, ...}."""
    if shape.hidden % shape.heads:
        raise ValueError(
            f"--hidden {shape.hidden} is not divisible by --heads {shape.heads}; pick heads that divide it"
        )
    head_dim = shape.hidden // shape.heads
    if head_dim not in {32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512}:
        raise ValueError(
            f"head_dim {head_dim} (= hidden {shape.hidden} / heads {shape.heads}) is not one that vLLM's "
            "CPU attention "
            "supports (32, 64, 80, 96, 112, 128, ...); change --hidden or --heads"
        )
    return build_tiny_armorm(
        out_dir,
        seed=seed,
        hidden_size=shape.hidden,
        num_layers=shape.layers,
        num_heads=shape.heads,
        num_kv_heads=shape.heads,
        intermediate_size=3 * shape.hidden,
        objective_names=objective_names(shape.objectives),
    )


def export_sequence_classifier(armorm_dir: Path, out_dir: Path) -> Path:
    """Write a LlamaForSequenceClassification with the bench model's backbone; score = the rewards head."""
    state = load_file(str(armorm_dir / "model.safetensors"))
    config = json.loads((armorm_dir / "config.json").read_text())
    names = config.get("objective_names") or [f"objective-{i}" for i in range(config["num_objectives"])]
    tensors = {name: tensor.contiguous() for name, tensor in state.items() if name.startswith("model.")}
    tensors["score.weight"] = state["regression_layer.weight"].contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for key in _ARMORM_CONFIG_KEYS:
        config.pop(key, None)
    config["architectures"] = ["LlamaForSequenceClassification"]
    config["num_labels"] = len(names)
    config["id2label"] = {str(i): name for i, name in enumerate(names)}
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    for name in _TOKENIZER_FILES:
        if (armorm_dir / name).exists():
            shutil.copy(armorm_dir / name, out_dir / name)
    return out_dir
