"""Scenarios that run inside the bench process: no HTTP, the service's own scorer, batcher and backend.

- the in-process ceiling: the same `Scorer -> Batcher -> TransformersBackend` path a request takes in the
  server, driven by concurrent coroutines instead of HTTP clients (what HTTP costs is the difference);
- GRPO traffic with prompt sharing on and off (two runtimes over the one loaded model);
- the fp32 exactness check: sharing on vs off must give the same scores within 1e-4;
- the padding ratio of the batch planner on long-tailed lengths, against first-come-first-served
  batching under the same budgets;
- PAMA's closed form on a 4096 x 19 advantage matrix.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clients.protocol import ScoreGroup, ScoreItem, ScoreRequest
from service.bench.loadgen import LoadResult
from service.bench.workload import ChatItem, GrpoGroup, conversation, flatten_groups
from service.engine.planning import plan_batch
from service.engine.transformers_backend import TransformersBackend
from service.engine.types import Batch, EncodedConversation, ScoreRows, ScoringBackend
from service.model.loading import LoadedRewardModel, load_reward_model
from service.objectives.pama import pama_combine
from service.runtime import Runtime, build_backend, build_runtime
from service.scoring.encoding import ChatEncoder, EncodingPolicy
from service.settings import ServiceSettings

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class RecordingBackend:
    """Wraps a backend and records each batch's real and computed tokens (a fake's honesty, no mocks)."""

    inner: ScoringBackend
    batches: list[tuple[list[int], int]] = field(default_factory=list)  # (lengths, computed tokens)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def packed(self) -> bool:
        return self.inner.packed

    def run(self, batch: Batch) -> ScoreRows:
        rows = self.inner.run(batch)
        self.batches.append(([c.num_tokens for c in batch.conversations], rows.computed_tokens))
        return rows


def load_model(model_dir: Path, dtype: str) -> LoadedRewardModel:
    return load_reward_model(model_dir, dtype=_DTYPES[dtype])


def make_runtime(
    loaded: LoadedRewardModel,
    dtype: str,
    *,
    share_prompts: bool,
    packed: bool = True,
    attention_kernel: str = "auto",
    wrap: Callable[[ScoringBackend], ScoringBackend] | None = None,
) -> Runtime:
    """The service's runtime around `loaded`, in this process: its backend built by the service's own
    `build_backend` (compiled ahead, the same kernel and thread settings), on the CPU, no prefix cache."""
    settings = ServiceSettings(  # type: ignore[arg-type]
        dtype=dtype, share_prompts=share_prompts, packed=packed, attention_kernel=attention_kernel,
        device="cpu", backend="transformers", engine_process=False, prefix_cache_mb=0,
    )
    backend = build_backend(settings, loaded)
    return build_runtime(settings, loaded, wrap(backend) if wrap else backend)


async def _closed_loop(
    call: Callable[[Any], Awaitable[int]], chunks: Sequence[Any], concurrency: int
) -> LoadResult:
    result = LoadResult()
    queue = iter(chunks)

    async def worker() -> None:
        for chunk in queue:
            sent = time.perf_counter()
            scored = await call(chunk)  # not `items += await ...`: that reads `items` before the await
            result.items += scored
            result.latencies_s.append(time.perf_counter() - sent)
            result.requests += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def _run_with(runtime: Runtime, body: Callable[[Runtime], Awaitable[LoadResult]]) -> LoadResult:
    """A fresh event loop per scenario: the batcher's loop task belongs to the loop that started it."""

    async def main() -> LoadResult:
        runtime.batcher.start()
        try:
            return await body(runtime)
        finally:
            await runtime.batcher.close()

    return asyncio.run(main())


def item_requests(items: Sequence[ChatItem], per_request: int) -> list[ScoreRequest]:
    return [
        ScoreRequest(
            items=[ScoreItem(prompt=i.prompt, response=i.response) for i in items[s : s + per_request]]
        )
        for s in range(0, len(items), per_request)
    ]


def group_requests(groups: Sequence[GrpoGroup]) -> list[ScoreRequest]:
    return [ScoreRequest(groups=[ScoreGroup(prompt=g.prompt, responses=list(g.responses))]) for g in groups]


def scorer_throughput(
    runtime: Runtime, requests: Sequence[ScoreRequest], concurrency: int, *, warm: bool = True
) -> LoadResult:
    """Closed loop over `Scorer.score`: tokenisation, batching, forward and response shaping, minus HTTP.
    `warm`: first a few of the requests, untimed (a backend that has not run yet)."""

    async def call(request: ScoreRequest) -> int:
        outcome = await runtime.scorer.score(request)
        return len(outcome.response.results) + sum(len(g.results) for g in outcome.response.groups)

    async def body(rt: Runtime) -> LoadResult:
        if warm:
            await _closed_loop(call, requests[: max(1, concurrency // 4)], concurrency)
        return await _closed_loop(call, requests, concurrency)

    return _run_with(runtime, body)


@dataclass(frozen=True)
class InProcessTarget:
    """The service's scorer, batcher and backend in this process: the in-process side of a paired ratio.

    Each measurement builds a fresh runtime (a batcher's loop task belongs to one event loop) around the one
    warm, compiled backend. Built with the HTTP server's attention kernel and planned at its batch budget,
    the two sides of the pair differ by the HTTP around the model, not by two start-up probes' draws (on 2
    busy cores the kernel probe has picked `paged` in the server and `matmul` in the bench process)."""

    name: str
    loaded: LoadedRewardModel
    backend: ScoringBackend
    settings: ServiceSettings
    batch_tokens: int

    def throughput(self, items: Sequence[ChatItem], concurrency: int, per_request: int) -> LoadResult:
        runtime = build_runtime(self.settings, self.loaded, self.backend)
        runtime.batcher.plan_at(self.batch_tokens)
        return scorer_throughput(runtime, item_requests(items, per_request), concurrency, warm=False)


def exactness_fp32(model_dir: Path, groups: Sequence[GrpoGroup]) -> dict[str, Any]:
    """The packed, shared-prompt path vs transformers' padded forward of every row whole (fp32); max |diff|."""
    loaded = load_model(model_dir, "float32")
    model = loaded.model
    encoder = ChatEncoder(
        loaded.tokenizer, gate_pattern=model.gating_token_pattern, bos_token_id=loaded.tokenizer.bos_token_id
    )
    items = flatten_groups(groups)
    encoded = encoder.encode_conversations(
        [conversation(i.prompt, i.response) for i in items],
        EncodingPolicy(4096, "error"),
        labels=[f"grpo[{k}]" for k in range(len(items))],
    )
    shared = TransformersBackend(model, share_prompts=True).run(encoded)
    unshared = TransformersBackend(model, share_prompts=False, packed=False).run(encoded)
    diffs = {
        "max_abs_score_diff": float(np.max(np.abs(shared.score - unshared.score))),
        "max_abs_reward_diff": float(np.max(np.abs(shared.rewards - unshared.rewards))),
        "max_abs_gating_diff": float(np.max(np.abs(shared.gating - unshared.gating))),
    }
    return {
        **diffs,
        "items": len(items),
        "tolerance": 1e-4,
        "ok": all(value <= 1e-4 for value in diffs.values()),
        "computed_tokens_shared": shared.computed_tokens,
        "computed_tokens_unshared": unshared.computed_tokens,
    }


def fifo_padding_ratio(lengths: Sequence[int], max_batch_items: int, max_batch_tokens: int) -> float:
    """Padded/real tokens when batches are cut in arrival order under the same item and token budgets."""
    padded = real = 0
    batch: list[int] = []
    for length in [*lengths, None]:
        fits = (
            length is not None
            and len(batch) < max_batch_items
            and ((len(batch) + 1) * max([*batch, length]) <= max_batch_tokens)
        )
        if batch and not fits:
            padded += len(batch) * max(batch)
            real += sum(batch)
            batch = []
        if length is not None:
            batch.append(length)
    return padded / real if real else 1.0


def padded_planner_ratio(lengths: Sequence[int], max_batch_items: int, max_batch_tokens: int) -> float:
    """Padded/real tokens of the length-sorting planner on a padded backend (`--no-packed`), same burst."""
    waiting = [EncodedConversation(tuple(range(length)), gate_index=0, prefix_len=0) for length in lengths]
    padded = 0
    while waiting:
        chosen = plan_batch(
            waiting, max_batch_tokens=max_batch_tokens, max_batch_items=max_batch_items, share_prompts=False
        )
        padded += len(chosen) * max(waiting[i].num_tokens for i in chosen)
        picked = set(chosen)
        waiting = [c for i, c in enumerate(waiting) if i not in picked]
    return padded / sum(lengths) if lengths else 1.0


def padding_scenario(loaded: LoadedRewardModel, dtype: str, items: Sequence[ChatItem]) -> dict[str, Any]:
    """All items arrive at once as single-item requests (a burst); the planner batches them."""
    recorder: list[RecordingBackend] = []

    def wrap(backend: ScoringBackend) -> ScoringBackend:
        recorder.append(RecordingBackend(backend))
        return recorder[0]

    runtime = make_runtime(loaded, dtype, share_prompts=True, wrap=wrap)
    requests = item_requests(items, 1)

    async def body(rt: Runtime) -> LoadResult:
        return await _closed_loop(lambda r: _count(rt.scorer.score(r)), requests, concurrency=len(requests))

    result = _run_with(runtime, body)
    batches = recorder[0].batches
    real = sum(sum(lengths) for lengths, _ in batches)
    computed = sum(tokens for _, tokens in batches)
    request_lengths = _lengths_in_request_order(runtime, items)
    settings = runtime.settings
    return {
        "items": sum(len(lengths) for lengths, _ in batches),
        "batches": len(batches),
        "items_per_s": round(result.items_per_s, 2),
        "real_tokens": real,
        "computed_tokens": computed,
        "padding_ratio": round(computed / real, 4) if real else 1.0,
        "packed": recorder[0].packed,
        "padded_planner_ratio": round(
            padded_planner_ratio(request_lengths, settings.max_batch_items, settings.max_batch_tokens), 4
        ),
        "fifo_padding_ratio": round(
            fifo_padding_ratio(request_lengths, settings.max_batch_items, settings.max_batch_tokens), 4
        ),
        "length_p50": int(np.percentile(request_lengths, 50)),
        "length_p99": int(np.percentile(request_lengths, 99)),
        "length_max": int(max(request_lengths)),
    }


async def _count(pending: Awaitable[Any]) -> int:
    outcome = await pending
    return len(outcome.response.results)


def _lengths_in_request_order(runtime: Runtime, items: Sequence[ChatItem]) -> list[int]:
    encoded = runtime.encoder.encode_conversations(
        [conversation(i.prompt, i.response) for i in items],
        EncodingPolicy(4096, "error"),
        labels=[f"items[{k}]" for k in range(len(items))],
    )
    return [c.num_tokens for c in encoded]


def pama_timing(rows: int = 4096, objectives: int = 19, repeats: int = 200, seed: int = 0) -> dict[str, Any]:
    """Best and median wall time of `pama_combine` on a (rows, objectives) float64 array."""
    advantages = np.random.default_rng(seed).normal(size=(rows, objectives))
    pama_combine(advantages)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        pama_combine(advantages)
        times.append(time.perf_counter() - started)
    return {
        "shape": [rows, objectives],
        "best_ms": round(min(times) * 1000, 4),
        "median_ms": round(statistics.median(times) * 1000, 4),
        "target_ms": 1.0,
        "repeats": repeats,
    }
