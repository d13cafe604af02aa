"""LoRA through peft: wrap the policy, hand vLLM and the export merged weights, checkpoint the adapter only.

Why peft and not our own low-rank layers: it is what users already run (its adapters load in vLLM, TRL
and transformers), and its `get_delta_weight` is the merge rule the adapter was trained under. The
trainer keeps the base weights frozen and untouched; everything that leaves the trainer as a plain causal
LM — the rollout engine's weights after each update, the exported ``final/`` — is ``W + B A * alpha / r``
computed on the fly (`plain_state`), never by merging in place (``merge_adapter`` + ``unmerge_adapter``
would leave float round-off in ``W`` after every sync). Checkpoints hold the adapter alone (megabytes),
and ``--resume`` loads it back onto the same base, so the optimiser's moments meet the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from service.training.config import ConfigError, LoraSettings

ADAPTER_CONFIG = "adapter_config.json"


def _peft_or_none():
    try:
        import peft
    except ImportError:
        return None
    return peft


def _peft():
    peft = _peft_or_none()
    if peft is None:
        raise ConfigError("--lora-rank needs the peft package: pip install 'paretorm[trainer]' (or peft)")
    return peft


def is_lora(model: nn.Module) -> bool:
    peft = _peft_or_none()
    return peft is not None and isinstance(model, peft.PeftModel)


def wrap_lora(model: nn.Module, settings: LoraSettings, seed: int = 0) -> nn.Module:
    """A fresh adapter on ``model`` (only the adapter's parameters train; B starts at zero: same function).

    A's random start is drawn from ``seed``: the same run twice trains the same adapter.
    """
    peft = _peft()
    targets = settings.targets[0] if settings.targets == ("all-linear",) else list(settings.targets)
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=targets, task_type="CAUSAL_LM")  # fmt: skip
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return peft.get_peft_model(model, config)
    except ValueError as error:  # peft names the modules it could not find
        raise ConfigError(f"--lora-targets {','.join(settings.targets)}: {error}") from None


def load_adapter(model: nn.Module, adapter_dir: Path) -> nn.Module:
    """The adapter of a checkpoint back on its base, trainable (``--resume``).

    peft initialises the adapter's layers before it loads the saved values, drawing from torch's RNG; the
    checkpoint has just restored that RNG, and a resumed run must draw what the uninterrupted one draws.
    """
    with torch.random.fork_rng(devices=[]):
        return _peft().PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def base_model(model: nn.Module) -> nn.Module:
    """The causal LM under the adapter (whose ``save_pretrained`` writes a whole model, not an adapter)."""
    return model.get_base_model() if is_lora(model) else model


@torch.no_grad()
def plain_state(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` under the plain causal LM's names, with every adapter's delta added.

    For a model without an adapter this is its ``state_dict`` (FSDP shards gathered one tensor at a time:
    every rank must walk it); with one, the ``.base_layer.`` level peft inserts is dropped, ``lora_*``
    tensors are left out, and each adapted weight comes out as ``base + delta`` (a new tensor; the base is
    not touched).
    """
    if not is_lora(model):
        from service.training.fsdp import full_state

        yield from full_state(model)
        return
    base = model.get_base_model()
    deltas: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)  # (out, in)
            deltas[f"{name}.weight"] = delta
    for key, tensor in base.state_dict().items():
        if ".lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        yield key, (tensor + deltas[key].to(tensor.dtype)) if key in deltas else tensor


def trainable_fraction(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)
