"""What a benchmark run records about itself: the model, the traffic's measured lengths, the service's
settings, which forward and attention kernel each side chose, the environments the servers ran with, the
host, and how long it all took (the JSON's `meta`)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

from clients.protocol import ModelInfo
from service.bench import servers
from service.bench.workload import conversation, flatten_groups
from service.cpu_budget import cgroup_cpu_limit
from service.malloc import SERVING_MALLOC_ENV
from service.scoring.encoding import EncodingPolicy

if TYPE_CHECKING:
    from service.bench.runner import BenchConfig


def run_meta(
    cfg: BenchConfig,
    tuned: bool,
    loaded: Any,
    chat: list[Any],
    grpo: list[Any],
    runtime: Any,
    cards: dict[str, ModelInfo],
    started: float,
    ready_s: dict[str, float | None],
) -> dict[str, Any]:
    settings = runtime.settings
    return {
        "model": cfg.shape.describe(),
        "model_revision": loaded.revision,
        "config": {**asdict(cfg), "shape": asdict(cfg.shape)},
        "dtype": cfg.dtype,
        "workload": _workload(runtime, chat, grpo),
        "service_settings": {
            "max_batch_tokens": settings.max_batch_tokens,
            "max_batch_items": settings.max_batch_items,
            "batch_wait_ms": settings.batch_wait_ms,
            "compile_forward": settings.compile_forward,
            "compiled": settings.compile_wanted,  # also vLLM's: --enforce-eager only where this is false
        },
        "forward": {  # as each chose them here (attention kernel and batch budget: measured probes)
            side: {"forward": card.forward, "attention": card.attention, "batch_tokens": card.batch_tokens}
            for side, card in cards.items()
        },
        "service_env": SERVING_MALLOC_ENV,
        "bench_process_malloc_tuned": tuned,
        "vllm_env": servers.vllm_env(),
        "ready_by_s": {  # upper bounds: children load in parallel and are polled one after another
            name: round(value, 1) if value else None for name, value in ready_s.items()
        },
        "host": _host(),
        "load_average_at_end": [
            round(v, 2) for v in os.getloadavg()
        ],  # other work on the machine skews numbers
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _workload(runtime: Any, chat: list[Any], grpo: list[Any]) -> dict[str, Any]:
    """The traffic's lengths as the service's own encoder counts them (templated, with the gate tokens)."""
    policy = EncodingPolicy(4096, "error")
    chat_lengths = [
        e.num_tokens
        for e in runtime.encoder.encode_conversations(
            [conversation(i.prompt, i.response) for i in chat], policy, labels=["chat"] * len(chat)
        )
    ]
    group_items = flatten_groups(grpo[:1])
    grpo_encoded = runtime.encoder.encode_conversations(
        [conversation(i.prompt, i.response) for i in group_items], policy, labels=["grpo"] * len(group_items)
    )
    return {
        "chat_mean_tokens": round(sum(chat_lengths) / len(chat_lengths), 1),
        "grpo_shared_prompt_tokens": grpo_encoded[0].prefix_len,
        "grpo_mean_tokens": round(sum(e.num_tokens for e in grpo_encoded) / len(grpo_encoded), 1),
        "grpo_prompts": len(grpo),
        "grpo_group": len(group_items),
    }


def _host() -> dict[str, Any]:
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_quota": cgroup_cpu_limit(),  # CPUs a container's limit allows (None: none), see cpu_budget
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
