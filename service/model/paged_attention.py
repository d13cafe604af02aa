"""Packed attention through vLLM's CPU attention kernel, when the vLLM CPU build is installed.

On an Intel Xeon with AMX-BF16 PyTorch's CPU flash attention runs a bf16 head_dim-64 layer at ~0.1-0.25
TFLOP/s, while vLLM's own CPU kernel (`_C::cpu_attention_with_kv_cache`, AMX tiles for both matmuls) takes
2.4-3.7x less time on the same sequences (measured 2026-12-06: 16 chat items of ~336 tokens, 6 vs 21 ms
per layer; 2 GRPO groups of 8, 8 vs 19 ms). That kernel was the last part of vLLM's forward that ours
lacked, so the packed forward can use it as a third attention kernel; `attention_probe` measures it beside
the other two and keeps the fastest.

The kernel reads keys and values from a paged cache: blocks of `BLOCK_SIZE` token slots, a block table per
request, and queries that are the last `q_len` positions of a request's `seq_len` keys. An
`AttentionSequence` from the packing step maps onto that directly:
- its keys (positions 0..n-1) fill blocks, and a full block whose key rows, and every row before them, equal
  another sequence's is shared, not written twice (a GRPO prompt's blocks are read by every response, the
  way vLLM's prefix cache shares blocks);
- each run of consecutive query positions becomes one request whose `seq_len` ends at the run's last
  position, so the kernel's causal rule is the sequence's rule (a readout query alone is a one-token request).

The plan (block tables, slots, scheduler metadata and one zeroed cache buffer) is built once per forward
and reused by every layer; each layer writes its keys and values into the buffer's slots and attends.
Nothing here imports vLLM's Python package: only its compiled operator library is loaded, which uses
torch's own OpenMP runtime and threads.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .packed_attention import AttentionSequence

__all__ = ["BLOCK_SIZE", "PagedKeys", "PagedPlan", "attend_paged", "available", "plan_paged_keys",
           "plan_paged_requests", "supports"]  # fmt: skip

logger = logging.getLogger(__name__)

BLOCK_SIZE = 32  # the AMX kernel wants a multiple of 32; 64 and 128 measured the same on the bench shape
HEAD_DIMS = frozenset({32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512})  # `CPUAttentionBackend`'s list
DTYPES = frozenset({torch.float32, torch.bfloat16, torch.float16})


def supports(head_dim: int, dtype: torch.dtype) -> bool:
    """Whether the kernel takes this head size and dtype (its library may still be missing: `available`)."""
    return head_dim in HEAD_DIMS and dtype in DTYPES


@functools.cache
def available() -> bool:
    """True when vLLM's CPU operator library is installed and loads (x86 CPUs with AVX2 or better)."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX"):
        return False
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        return False
    library = Path(spec.origin).parent / _library_name()
    try:
        torch.ops.load_library(str(library))
        torch.ops._C.cpu_attention_with_kv_cache  # noqa: B018 - raises if the library lacks the kernel
    except (OSError, RuntimeError, AttributeError) as error:
        logger.info("vLLM's CPU attention kernel is not available (%s)", error)
        return False
    return True


def _library_name() -> str:
    """The build vLLM itself loads on this CPU (`vllm.platforms.cpu.CpuPlatform.import_kernels`)."""
    if torch.cpu._is_avx512_supported():
        return "_C.abi3.so" if torch.cpu._is_avx512_bf16_supported() else "_C_AVX512.abi3.so"
    return "_C_AVX2.abi3.so"


def _isa(dtype: torch.dtype, head_dim: int) -> str:
    """vLLM's rule (`cpu_attn._get_attn_isa`) for x86: AMX tiles for bf16 where the CPU has them."""
    if head_dim % 32 != 0:
        return "vec16"
    if dtype == torch.bfloat16 and torch.cpu._is_amx_tile_supported():
        return "amx"
    return "vec"


@dataclass(frozen=True, slots=True)
class PagedKeys:
    """Where every sequence's keys live in one forward's paged cache, shared by all its layers."""

    block_ids: list[np.ndarray]  # per sequence: its blocks, in position order
    write_rows: torch.Tensor  # (W,) key-pool rows to write, each block's rows once
    write_slots: torch.Tensor  # (W,) their cache slots (block * BLOCK_SIZE + offset)
    writes_leading_rows: bool  # write_rows is 0..W-1: the pool's first W rows, no gather needed
    cache: torch.Tensor  # (blocks, kv_heads, BLOCK_SIZE, 2 * head_dim), zeroed: unused slots stay finite
    isa: str


@dataclass(frozen=True, slots=True)
class PagedPlan:
    """One attention call's requests over `keys` (see the module docstring)."""

    keys: PagedKeys
    query_rows: torch.Tensor  # (Q,) query rows in request order
    queries_lead: bool  # query_rows is 0..Q-1: the first Q rows, no gather or scatter needed
    query_start: torch.Tensor  # (requests + 1,) int32 offsets into `query_rows`
    seq_lens: torch.Tensor  # (requests,) int32 keys each request reads
    block_table: torch.Tensor  # (requests, max blocks) int32
    scheduler: torch.Tensor | None  # the kernel's work split (`get_scheduler_metadata`); None: no requests


def plan_paged_keys(
    sequences: Sequence[AttentionSequence], *, kv_heads: int, head_dim: int, dtype: torch.dtype
) -> PagedKeys:
    """Lay every sequence's keys out in blocks, sharing full blocks with equal key-row prefixes."""
    block_of: dict[tuple[int, bytes], int] = {}
    block_ids: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    slots: list[np.ndarray] = []
    blocks = 0
    for sequence in sequences:
        key_rows = np.asarray(sequence.key_rows, dtype=np.int64)
        if not np.array_equal(np.asarray(sequence.key_positions), np.arange(len(key_rows))):
            raise ValueError("the paged kernel needs each sequence's key positions to be 0..n-1 in order")
        ids, parent = [], -1
        for start in range(0, len(key_rows), BLOCK_SIZE):
            chunk = key_rows[start : start + BLOCK_SIZE]
            name = (parent, chunk.tobytes())
            block = block_of.get(name) if len(chunk) == BLOCK_SIZE else None
            if block is None:
                block, blocks = blocks, blocks + 1
                rows.append(chunk)
                slots.append(np.arange(block * BLOCK_SIZE, block * BLOCK_SIZE + len(chunk)))
                if len(chunk) == BLOCK_SIZE:
                    block_of[name] = block
            ids.append(block)
            parent = block
        block_ids.append(np.asarray(ids, dtype=np.int32))
    write_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return PagedKeys(
        block_ids=block_ids,
        write_rows=torch.from_numpy(write_rows),
        write_slots=torch.from_numpy(np.concatenate(slots) if slots else np.zeros(0, np.int64)),
        writes_leading_rows=_leading(write_rows),
        cache=torch.zeros(max(blocks, 1), kv_heads, BLOCK_SIZE, 2 * head_dim, dtype=dtype),
        isa=_isa(dtype, head_dim),
    )


def plan_paged_requests(
    keys: PagedKeys, sequences: Sequence[AttentionSequence], *, num_heads: int
) -> PagedPlan:
    """One request per run of consecutive query positions of each sequence (`sequences` in the order, and
    with the keys, that `keys` was planned from)."""
    query_rows: list[np.ndarray] = []
    query_lens: list[int] = []
    seq_lens: list[int] = []
    tables: list[np.ndarray] = []
    for sequence, block_ids in zip(sequences, keys.block_ids, strict=True):
        positions = np.asarray(sequence.query_positions, dtype=np.int64)
        if not len(positions):
            continue
        if positions.min() < 0 or positions.max() >= len(sequence.key_rows):
            raise ValueError("a query position lies outside its sequence's keys")
        rows = np.asarray(sequence.query_rows, dtype=np.int64)
        cuts = np.flatnonzero(np.diff(positions) != 1) + 1
        for run_rows, run_positions in zip(np.split(rows, cuts), np.split(positions, cuts), strict=True):
            query_rows.append(run_rows)
            query_lens.append(len(run_rows))
            seq_lens.append(int(run_positions[-1]) + 1)
            tables.append(block_ids)
    width = max((len(table) for table in tables), default=1)
    block_table = np.zeros((len(tables), width), dtype=np.int32)
    for index, table in enumerate(tables):
        block_table[index, : len(table)] = table
    query_start = torch.from_numpy(np.concatenate([[0], np.cumsum(query_lens)]).astype(np.int32))
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    kv_heads, head_dim = keys.cache.shape[1], keys.cache.shape[3] // 2
    scheduler = None if not tables else torch.ops._C.get_scheduler_metadata(
        len(tables), num_heads, kv_heads, head_dim, lens, keys.cache.dtype, query_start, True, -1, keys.isa,
        False, None, "auto",
    )  # fmt: skip
    ordered_rows = np.concatenate(query_rows) if query_rows else np.zeros(0, np.int64)
    return PagedPlan(
        keys=keys,
        query_rows=torch.from_numpy(ordered_rows),
        queries_lead=_leading(ordered_rows),
        query_start=query_start,
        seq_lens=lens,
        block_table=torch.from_numpy(block_table),
        scheduler=scheduler,
    )


def _leading(rows: np.ndarray) -> bool:
    return bool(np.array_equal(rows, np.arange(len(rows))))


def _take(tensor: torch.Tensor, rows: torch.Tensor, leading: bool) -> torch.Tensor:
    return tensor[: len(rows)].contiguous() if leading else tensor.index_select(0, rows)


def attend_paged(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, plan: PagedPlan, scaling: float
) -> torch.Tensor:
    """Softmax attention of `query` (Tq, Hq, D) over the key pool (Tk, Hkv, D) -> (Tq, Hq, D)."""
    if plan.scheduler is None:
        return torch.zeros_like(query)
    cache = plan.keys.cache
    blocks, kv_heads, _, double_dim = cache.shape
    key_cache, value_cache = cache.view(blocks, kv_heads, 2 * BLOCK_SIZE, double_dim // 2).chunk(2, dim=2)
    written, leading = plan.keys.write_rows, plan.keys.writes_leading_rows
    torch.ops._C.cpu_attn_reshape_and_cache(
        _take(keys, written, leading), _take(values, written, leading), key_cache, value_cache,
        plan.keys.write_slots, plan.keys.isa, 1.0, 1.0, "auto",
    )  # fmt: skip
    covered = len(plan.query_rows) == len(query)  # rows in no request (padding) get zeros
    out = torch.empty_like(query) if covered else torch.zeros_like(query)
    ordered = _take(query, plan.query_rows, plan.queries_lead)  # (Q, Hq, D), request order
    mixed = out[: len(ordered)] if plan.queries_lead else torch.empty_like(ordered)
    torch.ops._C.cpu_attention_with_kv_cache(
        ordered, key_cache, value_cache, mixed, plan.query_start, plan.seq_lens, scaling, True, None, -1,
        plan.block_table, 0.0, plan.scheduler, None, None, 1.0, 1.0, "auto",
    )  # fmt: skip
    return out if plan.queries_lead else out.index_copy_(0, plan.query_rows, mixed)
