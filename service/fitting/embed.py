"""Frozen-backbone embeddings for fitting, batched, cached to disk and resumable.

Each conversation yields two states of the backbone's last layer (after the final norm): at its last
token (the reward token, read by the regression heads) and at its gate token (read by the gate). Both come
from one forward pass: attention is causal, so the state at the gate token depends on the prompt only.

Batching: items are sorted by length and packed so that ``rows × longest ≤ batch_tokens``, right-padded
with an attention mask (real tokens never attend to the pads, so results equal unpadded runs up to kernel
numerics).

Cache: ``<cache_dir>/<name>-<key>/`` holds ``shard-00000.safetensors`` … (``last`` and ``gate``, (n, H) in
the backbone dtype, ``shard_size`` items each) and ``manifest.json``. The key hashes the backbone's content
fingerprint, its dtype and every token id and gate index, so any change to data, template or weights
starts a fresh cache, and an interrupted run resumes from the shards already written (each shard is
written to a temporary name and renamed, so a crash never leaves a half shard).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from service.fitting.encoding import EncodedItem
from service.fitting.progress import Progress

MANIFEST = "manifest.json"
FORMAT = "paretorm-embeddings/1"


@dataclass(frozen=True)
class Embeddings:
    last: torch.Tensor
    """(M, H) state at each conversation's last token."""
    gate: torch.Tensor
    """(M, H) state at each conversation's gate token."""


class BackboneEmbedder:
    """Runs a frozen base model (``AutoModel``: outputs ``last_hidden_state``) over encoded items."""

    def __init__(self, backbone: nn.Module, *, pad_id: int, batch_tokens: int = 16384, device: str = "cpu") -> None:
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        self.backbone = backbone.eval().requires_grad_(False)
        self.pad_id = pad_id
        self.batch_tokens = batch_tokens
        self.device = device

    @torch.inference_mode()
    def embed(self, items: Sequence[EncodedItem]) -> Embeddings:
        order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
        last: list[torch.Tensor | None] = [None] * len(items)
        gate: list[torch.Tensor | None] = [None] * len(items)
        for batch in self._batches(order, items):
            rows = [items[i] for i in batch]
            width = max(len(r.ids) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, item in enumerate(rows):
                ids[r, : len(item.ids)] = torch.tensor(item.ids)
                mask[r, : len(item.ids)] = 1
            out = self.backbone(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            hidden = out.last_hidden_state.cpu()  # (B, L, H)
            for r, i in enumerate(batch):
                last[i] = hidden[r, len(rows[r].ids) - 1].clone()
                gate[i] = hidden[r, rows[r].gate_index].clone()
        if not items:
            raise ValueError("nothing to embed")
        return Embeddings(torch.stack(last), torch.stack(gate))  # type: ignore[arg-type]

    def _batches(self, order: list[int], items: Sequence[EncodedItem]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:  # ascending length: the newest item is the longest in its batch
            if current and (len(current) + 1) * len(items[i].ids) > self.batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches


def cache_key(backbone_fingerprint: str, dtype: torch.dtype, items: Sequence[EncodedItem]) -> str:
    h = hashlib.sha256(f"{FORMAT}\0{backbone_fingerprint}\0{dtype}\0{len(items)}\0".encode())
    for item in items:
        h.update(np.asarray(item.ids, dtype=np.int64).tobytes())
        h.update(f"|{item.gate_index};".encode())
    return h.hexdigest()[:20]


def embed_with_cache(
    embedder: BackboneEmbedder,
    items: Sequence[EncodedItem],
    *,
    cache_root: Path,
    name: str,
    key: str,
    shard_size: int = 1024,
    progress: bool = True,
) -> Embeddings:
    """Embed ``items``, reusing (and filling) the shards under ``cache_root/<name>-<key>``."""
    folder = cache_root / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(folder, key, len(items), shard_size)
    n_shards = (len(items) + shard_size - 1) // shard_size
    done = {int(s) for s, f in manifest["shards"].items() if (folder / f).is_file()}
    cached_items = sum(min(shard_size, len(items) - s * shard_size) for s in done)
    bar = Progress(len(items), f"embed {name}", initial=cached_items, enabled=progress)
    parts: list[Embeddings] = []
    for s in range(n_shards):
        fname = f"shard-{s:05d}.safetensors"
        if s in done:
            data = load_file(str(folder / fname))
            parts.append(Embeddings(data["last"], data["gate"]))
            continue
        chunk = items[s * shard_size : (s + 1) * shard_size]
        emb = embedder.embed(chunk)
        tmp = folder / f".{fname}.tmp"
        save_file({"last": emb.last.contiguous(), "gate": emb.gate.contiguous()}, str(tmp))
        os.replace(tmp, folder / fname)
        manifest["shards"][str(s)] = fname
        _write_manifest(folder, manifest)
        parts.append(emb)
        bar.update(len(chunk))
    bar.close()
    return Embeddings(torch.cat([p.last for p in parts]), torch.cat([p.gate for p in parts]))


def _read_manifest(folder: Path, key: str, n_items: int, shard_size: int) -> dict:
    fresh = {"format": FORMAT, "key": key, "num_items": n_items, "shard_size": shard_size, "shards": {}}
    path = folder / MANIFEST
    if not path.is_file():
        return fresh
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return fresh  # a torn manifest only costs recomputing its shards
    same = {k: manifest.get(k) for k in ("format", "key", "num_items", "shard_size")} == {
        k: fresh[k] for k in ("format", "key", "num_items", "shard_size")
    }
    return manifest if same and isinstance(manifest.get("shards"), dict) else fresh


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)
