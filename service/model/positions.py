"""Which token positions the ArmoRM heads read: the reward token and the gate token.

Reference semantics (armorm.md §1.4), reproduced exactly:

* reward token: the token *before the first* ``pad_token_id`` in the row; a row without a pad gives
  its last token (``(argmax(ids == pad) - 1) % L``). With right padding this is the last real token.
* gate token: the start of the *last* occurrence of the gate pattern
  (``<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n`` for Llama-3), i.e. the ``<|eot_id|>``
  closing the message before the final assistant header. The reference scans ``j`` from
  ``len(ids) - len(pattern)`` down to 0, so a match must fit entirely inside the row.

The reference does the gate search as a Python loop over every token of every row; here the single-row
version only checks positions holding the pattern's first token (found by a C-level scan), and the
batched version compares all windows at once (numpy on CPU, torch on other devices).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import GatePatternNotFound, ModelInputError

__all__ = ["gate_position", "gate_positions", "reward_position", "reward_positions"]


def gate_position(input_ids: Sequence[int] | np.ndarray | torch.Tensor, pattern: Sequence[int]) -> int:
    """Start index of the last occurrence of ``pattern`` in ``input_ids``; raise ``GatePatternNotFound``."""
    pat = [int(t) for t in pattern]
    if not pat:
        raise ValueError("gate pattern must not be empty")
    if isinstance(input_ids, list):
        return _gate_position_in_list(input_ids, pat)
    ids = _as_numpy(input_ids)
    n, p = int(ids.shape[0]), len(pat)
    if n >= p:
        # Only positions holding the pattern's first token can start a match; try them right to left.
        starts = np.flatnonzero(ids[: n - p + 1] == pat[0])
        target = np.asarray(pat, dtype=np.int64)
        for j in starts[::-1]:
            if np.array_equal(ids[j : j + p], target):
                return int(j)
    raise GatePatternNotFound(pat, length=n)


def _gate_position_in_list(ids: list[int], pat: list[int]) -> int:
    # list.index scans in C; converting a long list to numpy costs more than this whole search.
    n, p = len(ids), len(pat)
    starts: list[int] = []
    j = -1
    while n >= p:
        try:
            j = ids.index(pat[0], j + 1, n - p + 1)
        except ValueError:
            break
        starts.append(j)
    for j in reversed(starts):
        if ids[j : j + p] == pat:
            return j
    raise GatePatternNotFound(pat, length=n)


def gate_positions(input_ids: torch.Tensor, pattern: Sequence[int]) -> torch.Tensor:
    """Batched ``gate_position`` over the rows of ``(B, L)`` ids; returns a ``(B,)`` long tensor."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    n, p = int(input_ids.shape[1]), len(pattern)
    if p == 0:
        raise ValueError("gate pattern must not be empty")
    if n < p:
        raise GatePatternNotFound(pattern, length=n, row=0)
    m = n - p + 1
    # One shifted comparison per pattern token: hits[b, j] is True where a match starts at j.
    # numpy on CPU (several times faster than torch here for int64 compares), torch elsewhere.
    ids: np.ndarray | torch.Tensor = input_ids.numpy() if input_ids.device.type == "cpu" else input_ids
    hits = ids[:, :m] == int(pattern[0])
    for k in range(1, p):
        hits &= ids[:, k : k + m] == int(pattern[k])
    hits_t = torch.as_tensor(hits, device=input_ids.device)  # (B, L - P + 1)
    found = hits_t.any(dim=-1)
    if not bool(found.all()):
        row = int((~found).nonzero()[0, 0])
        raise GatePatternNotFound(pattern, length=n, row=row)
    # argmax returns the first maximum, so on the flipped rows it finds the last hit.
    return (m - 1) - hits_t.flip(-1).to(torch.int8).argmax(dim=-1)


def reward_position(input_ids: Sequence[int] | np.ndarray | torch.Tensor, pad_token_id: int | None) -> int:
    """Index of the token before the first pad (or the last token when there is no pad)."""
    ids = _as_numpy(input_ids)
    n = int(ids.shape[0])
    if n == 0:
        raise ModelInputError("cannot score an empty token sequence")
    if pad_token_id is None:
        return n - 1
    pads = np.flatnonzero(ids == pad_token_id)
    first = int(pads[0]) if pads.size else 0  # no pad: argmax of all-False is 0, as in the reference
    return (first - 1) % n


def reward_positions(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Batched ``reward_position`` over ``(B, L)`` ids; returns a ``(B,)`` long tensor."""
    b, n = input_ids.shape
    if n == 0:
        raise ModelInputError("cannot score an empty token sequence")
    if pad_token_id is None:
        if b != 1:
            raise ModelInputError(
                "the checkpoint's config has no pad_token_id, so rows of a batch cannot be told apart from "
                "padding; score one sequence at a time or set pad_token_id in config.json"
            )
        return torch.full((1,), n - 1, dtype=torch.long, device=input_ids.device)
    first_pad = (input_ids == pad_token_id).to(torch.int8).argmax(dim=-1)
    return (first_pad - 1) % n


def _as_numpy(input_ids: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(input_ids, torch.Tensor):
        if input_ids.dim() != 1:
            raise ValueError(f"expected one row of token ids, got shape {tuple(input_ids.shape)}")
        return input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
    arr = np.asarray(input_ids, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"expected one row of token ids, got shape {arr.shape}")
    return arr
