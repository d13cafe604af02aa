"""Reading and writing reward-model checkpoint directories — the package's only disk I/O.

``load_reward_model`` takes a local directory (nothing is downloaded) in the transformers layout:
``config.json``, tokenizer files, and weights as a single ``model.safetensors`` or sharded
``model-0000k-of-0000N.safetensors`` plus ``model.safetensors.index.json`` — the layout of
``RLHFlow/ArmoRM-Llama3-8B-v0.1``, which loads unchanged without ``trust_remote_code``.

Decisions:

* Kind detection: ``architectures`` containing ``LlamaForRewardModelWithGating`` (or ``num_objectives``
  in config plus a ``regression_layer.weight`` tensor) is ArmoRM; any ``*ForSequenceClassification`` is
  a plain multi-label classifier.
* Pickle ``.bin`` weights are refused unless ``allow_pickle=True``; even then they go through
  ``torch.load(weights_only=True)``.
* The module is built with its parameters on the ``meta`` device (buffers such as RoPE frequencies stay
  real), then the checkpoint tensors are *assigned* with ``load_state_dict(strict=True, assign=True)``:
  no random init of billions of weights and no second copy. Missing/unexpected keys are reported by
  name. ``lm_head.weight`` is ignored (reward models have no LM head).
* ArmoRM heads stay float32 whatever ``dtype`` the backbone gets (see ``armorm.py``).
* ``revision`` is a content fingerprint that costs kilobytes of reads, not gigabytes: config and index
  bytes, each weight file's safetensors header, and the first and last 4 KiB of every tensor (small
  files are hashed whole). Any retrained tensor changes it; a one-byte edit in the middle of a large
  tensor would not.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from .armorm import ArmoRMRewardModel
from .config import ArmoRMHeadConfig
from .errors import CheckpointError
from .sequence_classification import SequenceClassificationRewardModel

__all__ = [
    "ARMORM_ARCHITECTURE",
    "LoadedRewardModel",
    "checkpoint_revision",
    "load_reward_model",
    "parameters_on_meta",
    "save_armorm_checkpoint",
]

ARMORM_ARCHITECTURE = "LlamaForRewardModelWithGating"
SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
_IGNORED_KEYS = frozenset({"lm_head.weight"})
_WHOLE_FILE_HASH_BYTES = 16 << 20
_TENSOR_SAMPLE_BYTES = 4096

RewardModel = ArmoRMRewardModel | SequenceClassificationRewardModel


@dataclass
class LoadedRewardModel:
    """A ready-to-run reward model (eval mode, no grad) and what a server reports about it."""

    model: RewardModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    revision: str
    kind: str
    dtype: torch.dtype
    device: str
    is_demo: bool
    description: str | None
    path: Path


def load_reward_model(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    allow_pickle: bool = False,
    attn_implementation: str = "sdpa",
    weights: bool = True,
) -> LoadedRewardModel:
    """Load an ArmoRM-layout or sequence-classification reward model from a local directory.

    `weights=False` reads everything but the tensors: the model's parameters stay on `meta` (no memory), for
    a process that needs the tokenizer, objectives and gate pattern while another one runs the model.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CheckpointError(
            f"checkpoint directory {str(root)!r} does not exist or is not a directory; pass a local "
            "directory holding config.json, tokenizer files and safetensors weights (nothing is downloaded)"
        )
    raw = _read_json(root / "config.json")
    files = _weight_files(root, allow_pickle=allow_pickle)
    kind = _detect_kind(raw, files, root)  # before reading gigabytes of weights
    config = _read_config(root)
    head: ArmoRMHeadConfig | None = None
    if kind == ArmoRMRewardModel.kind:
        try:
            head = ArmoRMHeadConfig.from_dict(raw)
        except ValueError as exc:
            raise CheckpointError(f"{root / 'config.json'}: {exc}") from exc
    state = _read_tensors(files) if weights else {}
    for key in _IGNORED_KEYS:
        state.pop(key, None)
    model = _build_model(
        config, head, state if weights else None, root, dtype=dtype, attn_implementation=attn_implementation
    )
    if weights:
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedRewardModel(
        model=model,
        tokenizer=_load_tokenizer(root),
        name=_model_name(root, raw),
        revision=checkpoint_revision(root, files),
        kind=kind,
        dtype=dtype,
        device=device,
        is_demo=bool(raw.get("paretorm_demo", False)),
        description=raw.get("paretorm_description"),
        path=root,
    )


def _build_model(
    config: Any,
    head: ArmoRMHeadConfig | None,
    state: dict[str, torch.Tensor] | None,
    root: Path,
    *,
    dtype: torch.dtype,
    attn_implementation: str,
) -> RewardModel:
    """The model built on `meta`, then given `state` (None: it stays on `meta`). ArmoRM: the backbone in
    `dtype`, the heads in float32; a sequence classifier: all in `dtype`."""
    if head is not None:
        with parameters_on_meta():
            model: RewardModel = ArmoRMRewardModel(config, head, attn_implementation=attn_implementation)
        if state is not None:
            cast = {k: _cast(v, dtype if k.startswith("model.") else torch.float32) for k, v in state.items()}
            _assign(model, cast, root)
        return model
    with parameters_on_meta():
        classifier = SequenceClassificationRewardModel(config, attn_implementation=attn_implementation)
    if state is not None:
        _assign(classifier.classifier, {k: _cast(v, dtype) for k, v in state.items()}, root)
    return classifier


def save_armorm_checkpoint(
    model: ArmoRMRewardModel,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | Path,
    *,
    max_shard_size: int | None = None,
    extra_config: Mapping[str, Any] | None = None,
    backbone_dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` in the ArmoRM hub layout (config, safetensors, tokenizer) for ``load_reward_model``.

    ``backbone_dtype`` stores the backbone's floating tensors (``model.*``) in that dtype, the heads as they
    are; None: as held. The caller makes sure the cast loses nothing it cares about.

    ``max_shard_size`` (bytes) splits the weights into ``model-0000k-of-0000N.safetensors`` files plus
    ``model.safetensors.index.json``; ``None`` writes one ``model.safetensors``. Weight files already in
    ``out_dir`` are removed first so a stale shard can never be picked up.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [
        *out.glob("model*.safetensors"),
        *out.glob("pytorch_model*.bin"),
        out / SAFE_INDEX,
        out / PICKLE_INDEX,
    ]:
        stale.unlink(missing_ok=True)

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if backbone_dtype is not None:
        state = {
            k: v.to(backbone_dtype) if k.startswith("model.") and v.is_floating_point() else v
            for k, v in state.items()
        }
    shards = _plan_shards(state, max_shard_size)
    if len(shards) == 1 and max_shard_size is None:
        save_file(shards[0], str(out / SAFE_SINGLE), metadata={"format": "pt"})
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / SAFE_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    # Demo markers are not inherited: a model fitted on the demo backbone is no longer the demo.
    cfg = {k: v for k, v in model.config.to_dict().items() if not k.startswith("paretorm_")}
    if not cfg.get("_name_or_path"):
        cfg.pop("_name_or_path", None)
    cfg.pop("auto_map", None)  # our class needs no remote code
    cfg.update(model.head_config.to_dict())
    cfg["architectures"] = [ARMORM_ARCHITECTURE]
    cfg["dtype"] = str(backbone_dtype or model.backbone_dtype).removeprefix("torch.")
    cfg.update(extra_config or {})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def checkpoint_revision(root: Path, files: list[Path] | None = None) -> str:
    """Cheap content fingerprint of a checkpoint directory (16 hex chars); see the module docstring."""
    files = files if files is not None else _weight_files(root, allow_pickle=True)
    h = hashlib.sha256()
    for extra in (root / "config.json", root / SAFE_INDEX, root / PICKLE_INDEX):
        if extra.is_file():
            h.update(extra.name.encode() + b"\0" + extra.read_bytes())
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with f.open("rb") as fh:
            if size <= _WHOLE_FILE_HASH_BYTES:
                h.update(fh.read())
            elif f.suffix == ".safetensors":
                _hash_safetensors_samples(fh, h)
            else:
                for offset in range(0, size, size // 64):
                    fh.seek(offset)
                    h.update(fh.read(_TENSOR_SAMPLE_BYTES))
    return h.hexdigest()[:16]


# --- reading -----------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; a checkpoint directory needs a transformers config.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); fix or regenerate the file") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _weight_files(root: Path, *, allow_pickle: bool) -> list[Path]:
    """The weight files to read, in order; refuses pickles unless allowed."""
    if (root / SAFE_INDEX).is_file():
        return _indexed_files(root, root / SAFE_INDEX)
    if (root / SAFE_SINGLE).is_file():
        return [root / SAFE_SINGLE]
    loose = sorted(root.glob("*.safetensors"))
    if loose:
        return loose
    pickles = (
        [root / PICKLE_INDEX] if (root / PICKLE_INDEX).is_file() else sorted(root.glob("pytorch_model*.bin"))
    )
    if pickles:
        if not allow_pickle:
            raise CheckpointError(
                f"pickle .bin weights refused ({pickles[0]}): pickles can run code when loaded. Convert the "
                "checkpoint to safetensors, or if you trust it pass allow_pickle=True / --allow-pickle "
                "(it is then read with torch.load(weights_only=True))"
            )
        return _indexed_files(root, pickles[0]) if pickles[0].name == PICKLE_INDEX else pickles
    present = sorted(p.name for p in root.iterdir())
    raise CheckpointError(
        f"no weights in {root}: expected model.safetensors, or {SAFE_INDEX} with its shards; found {present}"
    )


def _indexed_files(root: Path, index_path: Path) -> list[Path]:
    weight_map = _read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path} has no 'weight_map'; regenerate the index with the shards")
    files = [root / name for name in sorted(set(weight_map.values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(
            f"{index_path.name} lists shards that are not in {root}: {missing}; copy them in"
        )
    return files


def _tensor_names(files: list[Path]) -> set[str]:
    """Tensor names from safetensors headers only (pickles would have to be unpickled: skipped)."""
    names: set[str] = set()
    for f in files:
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as fh:
                names.update(fh.keys())
    return names


def _read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            if f.suffix == ".safetensors":
                part = load_file(str(f), device="cpu")
            else:
                part = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # safetensors and torch raise several unrelated types for corrupt files
            raise CheckpointError(
                f"cannot read weights from {f} ({exc}); re-download or re-save the file"
            ) from exc
        state.update(part)
    return state


def _detect_kind(raw: Mapping[str, Any], files: list[Path], root: Path) -> str:
    archs = [str(a) for a in raw.get("architectures") or []]
    if ARMORM_ARCHITECTURE in archs:
        return ArmoRMRewardModel.kind
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return SequenceClassificationRewardModel.kind
    if "num_objectives" in raw and "regression_layer.weight" in _tensor_names(files):
        return ArmoRMRewardModel.kind
    raise CheckpointError(
        f"{root / 'config.json'} declares architectures {archs}: paretorm serves "
        f"{ARMORM_ARCHITECTURE} checkpoints and *ForSequenceClassification reward models; a causal LM or "
        "base model has no reward head"
    )


def _read_config(root: Path) -> PretrainedConfig:
    try:
        config: PretrainedConfig = AutoConfig.from_pretrained(str(root), trust_remote_code=False)
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(
            f"transformers cannot build a config from {root / 'config.json'} ({exc}); check its model_type"
        ) from exc
    return config


def _load_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(root), trust_remote_code=False)
    except (ValueError, OSError) as exc:
        raise CheckpointError(
            f"cannot load the tokenizer from {root} ({exc}); the directory needs tokenizer.json and "
            "tokenizer_config.json from the same checkpoint"
        ) from exc
    tokenizer.padding_side = "right"  # the reward token is found before the first pad (positions.py)
    return tokenizer


def _model_name(root: Path, raw: Mapping[str, Any]) -> str:
    """A hub-style ``owner/name`` from config when it holds one, else the directory name."""
    declared = str(raw.get("_name_or_path") or "")
    if declared.count("/") == 1 and not declared.startswith((".", "/", "~")):
        return declared
    return root.resolve().name


def _hash_safetensors_samples(fh: Any, h: Any) -> None:
    (header_len,) = struct.unpack("<Q", fh.read(8))
    header_bytes = fh.read(header_len)
    h.update(header_bytes)
    header = json.loads(header_bytes)
    base = 8 + header_len
    for name in sorted(k for k in header if k != "__metadata__"):
        start, end = header[name]["data_offsets"]
        for offset in {start, max(start, end - _TENSOR_SAMPLE_BYTES)}:
            fh.seek(base + offset)
            h.update(fh.read(min(_TENSOR_SAMPLE_BYTES, end - offset)))


# --- building -----------------------------------------------------------------------------------------


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every parameter on ``meta`` (buffers stay real), as accelerate's ``init_empty_weights``.

    It patches ``nn.Module.register_parameter`` process-wide for the duration: do not build other
    modules on another thread while a model is loading.
    """
    original: Callable[..., None] = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            p = module._parameters[name]
            assert p is not None
            module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]




def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _assign(module: nn.Module, state: dict[str, torch.Tensor], root: Path) -> None:
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {root} do not match the model its config.json describes: "
            f"missing {len(missing)} {missing[:8]}, unexpected {len(unexpected)} {unexpected[:8]}; "
            "check architectures/num_objectives/gating_* in config.json against the tensors"
        )
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"weights in {root} have the wrong shapes for config.json: {exc}") from exc
    still_meta = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if still_meta:
        raise CheckpointError(
            f"tensors {still_meta[:8]} were not loaded from {root}; the checkpoint is incomplete"
        )


def _plan_shards(state: dict[str, torch.Tensor], max_shard_size: int | None) -> list[dict[str, torch.Tensor]]:
    """Greedy split in state-dict order; a tensor larger than the limit gets a shard of its own."""
    if max_shard_size is not None and max_shard_size < 1:
        raise ValueError(f"max_shard_size must be a positive number of bytes, got {max_shard_size}")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if max_shard_size is not None and shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    return shards
