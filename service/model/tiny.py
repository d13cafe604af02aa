"""Deterministic tiny checkpoints in the real layouts, for tests and the demo server.

``build_tiny_armorm`` writes a directory that ``load_reward_model`` reads exactly like
``RLHFlow/ArmoRM-Llama3-8B-v0.1``: Llama backbone (hidden 128, 4 heads, so head_dim 32, which vLLM's
CPU attention accepts), regression layer, a non-trivial verbosity-debiasing transform matrix, a gating
network with ``logit_scale != 1`` and weights large enough that the gate is not uniform. Weights are
random: scores mean nothing, but every piece of the maths is exercised.

The tokenizer is a byte-level BPE trained on a built-in corpus without blank lines (so ``"\\n\\n"`` always
encodes as two newline tokens, like Llama-3's single ``"\\n\\n"`` token it never merges differently before
an empty response), with the Llama-3 special tokens and the
ArmoRM chat template (armorm.md §5). Its ids differ from Llama-3's, so the gate pattern is *derived* by
rendering a conversation and reading the ids between the ``<|eot_id|>`` before the last assistant header
and the first response token: a standalone ``"\\n\\n"`` can tokenise differently from the same characters
inside a conversation (environment.md, "Gate-pattern pitfall").

Everything is seeded; the same arguments give bit-identical tensors. Building takes ~0.1 s after imports.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn
from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

from .armorm import ArmoRMRewardModel
from .config import ARMORM_OBJECTIVES, ArmoRMHeadConfig
from .gate_pattern import derive_gate_pattern
from .loading import save_armorm_checkpoint

__all__ = [
    "ARMORM_CHAT_TEMPLATE",
    "DEMO_DESCRIPTION",
    "TINY_OBJECTIVES",
    "build_tiny_armorm",
    "build_tiny_sequence_classifier",
    "build_tiny_tokenizer",
    "default_demo_dir",
    "derive_gate_pattern",
    "ensure_demo_model",
]

# The Llama-3-Instruct template as expected in ArmoRM's tokenizer_config.json (armorm.md §5).
ARMORM_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|pad|>",
)
TINY_OBJECTIVES: tuple[str, ...] = (*ARMORM_OBJECTIVES[:5], "beavertails-is_safe")
DEMO_DESCRIPTION = (
    "paretorm demo model: a tiny ArmoRM-layout network with RANDOM weights (seed 0). Its scores carry no "
    "meaning; it exists to exercise the service end to end. Serve a real checkpoint for real rewards."
)
_DEMO_DIRNAME = "tiny-armorm-demo-v2"
_VOCAB_SIZE = 1024

_WORDS = (
    "the a an of to and in is it that for you with on as are be this was have not or by from at your can "
    "what how why when which who will would should could write explain answer question help helpful "
    "correct coherent complex verbose safe unsafe please thank thanks sure here there list steps code "
    "python function return value error test model reward score objective prompt response assistant user "
    "system message word words synonym beautiful pretty lovely elegant gorgeous stunning wonderful simple "
    "short long detailed brief summary example because therefore however first second third finally "
    "number numbers add subtract multiply divide equal sum total average data table file read write open "
    "close run server request client batch token tokens time fast slow good bad better best worse "
    "capital france paris city country river mountain weather today tomorrow water fire earth air"
).split()
_SENTENCES = (
    'What are some synonyms for the word "beautiful"?',
    "Nicely, Beautifully, Handsome, Stunning, Wonderful, Gorgeous, Pretty, Stunning, Elegant",
    "Write a Python function that returns the sum of a list of numbers.",
    "def total(xs):\n    return sum(xs)\n",
    "The capital of France is Paris.",
    "I cannot help with that request, but here is a safer alternative.",
    "Explain why the sky is blue in two short sentences.",
    "Sure! Here are three steps: first, read the file; second, parse it; third, write the result.",
)


def _corpus(seed: int = 1234) -> list[str]:
    """Deterministic training text: fixed sentences plus seeded word salad in chat-like lines."""
    rng = random.Random(seed)
    lines = list(_SENTENCES)
    for i in range(600):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        text = " ".join(words).capitalize() + rng.choice([".", "?", "!", ":", ",", ".\n", "\n"])
        lines.append(text if i % 3 else f"{i}: {text} ({rng.randint(0, 999)})")
    return lines


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A ~1024-token byte-level BPE with Llama-3-style special tokens and the ArmoRM chat template.

    Like ArmoRM's tokenizer it has no post-processor, so ``tokenizer(text)`` never inserts BOS: the
    template's ``bos_token`` is the only one.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|pad|>",
        padding_side="right",
        chat_template=ARMORM_CHAT_TEMPLATE,
    )


def build_tiny_armorm(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 256,
    objective_names: Sequence[str] = TINY_OBJECTIVES,
    gating_hidden_dim: int = 64,
    gating_n_hidden: int = 2,
    max_shard_size: int | None = None,
    demo: bool = False,
) -> Path:
    """Write a random, deterministic ArmoRM-layout checkpoint (config, weights, tokenizer) to ``out_dir``."""
    tokenizer = build_tiny_tokenizer()
    config = _tiny_llama_config(
        tokenizer, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size
    )
    names = tuple(objective_names)
    head = ArmoRMHeadConfig(
        num_objectives=len(names),
        objective_names=names,
        gating_hidden_dim=gating_hidden_dim,
        gating_n_hidden=gating_n_hidden,
        gating_token_pattern=derive_gate_pattern(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ArmoRMRewardModel(config, head, attn_implementation="sdpa")
        _randomise_heads(model, names)
    extra = {"paretorm_demo": True, "paretorm_description": DEMO_DESCRIPTION} if demo else None
    return save_armorm_checkpoint(
        model, tokenizer, out_dir, max_shard_size=max_shard_size, extra_config=extra
    )


def build_tiny_sequence_classifier(
    out_dir: str | Path, *, num_labels: int, seed: int = 0, label_names: Sequence[str] | None = None
) -> Path:
    """Write a random ``LlamaForSequenceClassification`` with ``num_labels`` named objectives."""
    names = tuple(label_names) if label_names is not None else (TINY_OBJECTIVES * 4)[:num_labels]
    if len(names) != num_labels or len(set(names)) != num_labels:
        raise ValueError(f"need {num_labels} distinct label names, got {list(names)}")
    tokenizer = build_tiny_tokenizer()
    config = _tiny_llama_config(tokenizer, 128, 2, 4, 2, 256)
    config.num_labels = num_labels
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
        with torch.no_grad():
            model.score.weight.normal_(0.0, 1.0 / config.hidden_size**0.5)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def default_demo_dir(cache_dir: str | Path | None = None) -> Path:
    """Demo checkpoint directory under ``cache_dir``, ``$PARETORM_CACHE_DIR`` or ``~/.cache/paretorm``."""
    base = cache_dir or os.environ.get("PARETORM_CACHE_DIR") or Path.home() / ".cache" / "paretorm"
    return Path(base).expanduser() / _DEMO_DIRNAME


def ensure_demo_model(cache_dir: str | Path | None = None) -> Path:
    """Build the seed-0 demo checkpoint once and return its directory (safe against concurrent builders)."""
    target = default_demo_dir(cache_dir)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=target.parent))
    try:
        build_tiny_armorm(staging, demo=True)
        try:
            staging.rename(target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _tiny_llama_config(
    tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.no_grad()
def _randomise_heads(model: ArmoRMRewardModel, names: tuple[str, ...]) -> None:
    """Heads big enough to matter: a non-uniform gate, logit_scale != 1, a verbosity-debiasing T."""
    h = model.config.hidden_size
    model.regression_layer.weight.normal_(0.0, 1.0 / h**0.5)
    for layer in model.gating.layers:
        assert isinstance(layer, nn.Linear)
        layer.weight.normal_(0.0, (2.0 / layer.in_features) ** 0.5)
        if layer.bias is not None:
            layer.bias.normal_(0.0, 0.1)
    # Logits of a few units after /temperature, so the softmax is visibly non-uniform.
    last = model.gating.layers[-1]
    assert isinstance(last, nn.Linear)
    last.weight.mul_(model.gating.temperature)
    model.gating.logit_scale.fill_(1.0 + torch.rand(()).item())
    k = len(names)
    v = names.index("helpsteer-verbosity") if "helpsteer-verbosity" in names else k - 1
    t = torch.zeros(k, k)
    t[range(k), range(k)] = 1.0
    lam = 0.05 + 0.45 * torch.rand(k)
    lam[v] = 0.0
    t[v] -= lam  # r_j' = r_j - lambda_j * r_v  (rewards @ T)
    t[v, v] = 1.0
    model.reward_transform_matrix.copy_(t)
