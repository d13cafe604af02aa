"""One benchmark run, start to finish: build the model, start the servers, measure side by side, clean up.

Order matters for fairness: every child server is started first (in parallel) and is idle while another
scenario runs, so scenarios never overlap; each timed scenario gets its own fresh traffic (see
`workload.WorkloadSource`); the untimed fp32 exactness check runs while the servers load. Children are
stopped in `finally` (and at interpreter exit), and the scratch directory is removed.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from clients.client import RewardClient
from clients.protocol import ModelInfo
from service.bench import scenarios_inprocess as inproc
from service.bench import servers
from service.bench.beside_batches import SINGLES_PER_S, beside_batches_section
from service.bench.checkpoints import ModelShape, build_bench_model, export_sequence_classifier
from service.bench.latency_section import latency_sections
from service.bench.paired import goal_pairings, grpo_client_count, paired_ratios
from service.bench.processes import ChildServer, ProcessSet
from service.bench.report import not_run
from service.bench.scenarios_http import throughput
from service.bench.targets import paretorm_groups, paretorm_items, vllm_classify
from service.bench.workload import WorkloadSource, conversation, flatten_groups, rendered_texts
from service.malloc import SERVING_MALLOC_ENV, tune_malloc
from service.scoring.encoding import EncodingPolicy
from service.settings import ServiceSettings


@dataclass(frozen=True)
class BenchConfig:
    shape: ModelShape
    dtype: str
    items: int
    concurrency: int
    batch_clients: int
    batch_size: int
    sweep: tuple[int, ...]
    grpo_prompts: int
    grpo_group: int
    shared_tokens: int
    long_tail: int
    latency_loads: tuple[float, ...]
    latency_seconds: float
    paired_rounds: int
    vllm: bool
    seed: int
    quick: bool
    ready_timeout_s: float = 300.0


def run_bench(cfg: BenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    wanted = SERVING_MALLOC_ENV.keys()
    tuned = set(tune_malloc()) | (wanted & os.environ.keys()) == wanted  # applied here, or the operator's
    work = Path(tempfile.mkdtemp(prefix="paretorm-bench-"))
    logs = work / "logs"
    started = time.perf_counter()
    try:
        with ProcessSet() as children:
            return _run(cfg, say, work, logs, children, tuned, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(
    cfg: BenchConfig,
    say: Callable[[str], None],
    work: Path,
    logs: Path,
    children: ProcessSet,
    tuned: bool,
    started: float,
) -> dict[str, Any]:
    say(f"building the bench model: {cfg.shape.describe()}")
    model_dir = build_bench_model(work / "armorm", cfg.shape, cfg.seed)
    vllm_reason = "--no-vllm given" if not cfg.vllm else servers.vllm_missing_reason()

    service = children.add(
        servers.paretorm_server(model_dir, cfg.dtype, share_prompts=True, logs=logs, cache_dir=work)
    )
    no_share = children.add(
        servers.paretorm_server(model_dir, cfg.dtype, share_prompts=False, logs=logs, cache_dir=work)
    )
    naive = children.add(servers.naive_server(model_dir, cfg.dtype, logs=logs))
    vllm: ChildServer | None = None
    backend: ChildServer | None = None  # the service with --backend vllm
    if vllm_reason is None:
        seqcls = export_sequence_classifier(model_dir, work / "vllm-seqcls")
        compiled = ServiceSettings().compile_wanted  # as the paretorm children will decide from the environment
        vllm = children.add(servers.vllm_server(seqcls, cfg.dtype, logs=logs, compiled=compiled))
        backend = children.add(
            servers.paretorm_vllm_backend_server(model_dir, cfg.dtype, logs=logs, cache_dir=work)
        )
    for child in (service, no_share, naive, *([vllm, backend] if vllm else [])):
        child.start()

    say("loading the in-process model and generating traffic")
    loaded = inproc.load_model(model_dir, cfg.dtype)
    tokenizer = loaded.tokenizer
    source = WorkloadSource(tokenizer, cfg.seed)
    c, bc, bs = cfg.concurrency, cfg.batch_clients, cfg.batch_size
    warm = source.chat(max(c, bc * bs))
    chat = {
        name: source.chat(cfg.items)
        for name in ("inproc", "http1", "httpb", "vllm1", "vllmb", "naive", "backend")
    }
    sweep_items = {
        level: (source.chat(max(cfg.items // 2, 4 * level)), source.chat(max(cfg.items // 2, 4 * level)))
        for level in cfg.sweep
    }
    grpo = source.grpo(cfg.grpo_prompts, cfg.grpo_group, cfg.shared_tokens)
    long_tail = source.long_tail(cfg.long_tail)
    grpo_warm = source.grpo(1, cfg.grpo_group, cfg.shared_tokens)  # never timed: keeps caches honest
    grpo_clients = grpo_client_count(cfg.grpo_group)

    say("fp32 exactness check (prompt sharing on vs off) while the servers load")
    exactness = inproc.exactness_fp32(model_dir, grpo[: max(1, min(4, len(grpo)))])

    for child in (service, no_share, naive):
        _wait(child, cfg.ready_timeout_s)
    with RewardClient(service.url) as client:
        served = client.model_info()  # the forward and attention kernel it chose
    backend_reason = vllm_reason
    vllm, vllm_reason = _ready_or_dropped(vllm, vllm_reason, "the vLLM server", children, cfg.ready_timeout_s)
    backend, backend_reason = _ready_or_dropped(
        backend, backend_reason, "paretorm --backend vllm", children, cfg.ready_timeout_s
    )

    single, batch = f"{c}x1", f"{bc}x{bs}"
    s: dict[str, Any] = {}
    sweep: dict[str, list[dict[str, Any]]] = {"paretorm": [], "vllm": []}
    objectives = cfg.shape.objectives

    cards: dict[str, ModelInfo] = {}
    say("PAMA 4096 x 19")
    s["pama_4096x19"] = inproc.pama_timing(objectives=objectives)
    for packed, key, target in ((True, f"in_process_{single}", "in-process"),
                                (False, f"in_process_padded_{single}", "in-process --no-packed")):
        say(f"{target} {single}" + ("" if packed else " (transformers' padded forward)"))
        runtime = inproc.make_runtime(loaded, cfg.dtype, share_prompts=True, packed=packed)
        cards[target] = runtime.card
        asyncio.run(runtime.warm_up())
        result = inproc.scorer_throughput(runtime, inproc.item_requests(chat["inproc"], 1), c)
        s[key] = _tagged(result.summary(), target, c, 1)
    say("GRPO in-process, sharing on and off")
    for share in (True, False):
        rt = inproc.make_runtime(loaded, cfg.dtype, share_prompts=share)
        key = "grpo_in_process_shared" if share else "grpo_in_process_unshared"
        s[key] = _tagged(
            inproc.scorer_throughput(rt, inproc.group_requests(grpo), grpo_clients).summary(),
            "in-process",
            grpo_clients,
            cfg.grpo_group,
        )
    say("padding on long-tailed lengths")
    s["padding_long_tail"] = inproc.padding_scenario(loaded, cfg.dtype, long_tail)
    s["exactness_fp32"] = exactness

    say(f"paretorm over HTTP: {single}, {batch}, sweep {list(cfg.sweep)}")
    items_target = paretorm_items(service.url, objectives)
    s[f"http_{single}"] = throughput(items_target, chat["http1"], concurrency=c, per_request=1, warmup=warm)
    s[f"http_{batch}"] = throughput(items_target, chat["httpb"], concurrency=bc, per_request=bs, warmup=warm)
    for level in cfg.sweep:
        sweep["paretorm"].append(
            throughput(items_target, sweep_items[level][0], concurrency=level, per_request=1, warmup=warm)
        )
    say("GRPO over HTTP: group requests, single-item requests, sharing off")
    s["grpo_http_groups"] = throughput(
        paretorm_groups(service.url, objectives),
        grpo,
        concurrency=grpo_clients,
        per_request=1,
        warmup=grpo_warm,
    )
    s["grpo_http_items"] = throughput(
        items_target, flatten_groups(grpo), concurrency=c, per_request=1, warmup=warm
    )
    s["grpo_http_unshared"] = throughput(
        paretorm_groups(no_share.url, objectives),
        grpo,
        concurrency=grpo_clients,
        per_request=1,
        warmup=grpo_warm,
    )
    children.stop(no_share)
    say(f"naive floor {single}")
    s[f"naive_{single}"] = throughput(
        paretorm_items(naive.url, objectives, "naive"),
        chat["naive"],
        concurrency=c,
        per_request=1,
        warmup=warm[:c],
    )
    children.stop(naive)

    vllm_keys = (f"vllm_classify_{single}", f"vllm_classify_{batch}", "vllm_grpo_items")
    vllm_target = vllm_classify(vllm.url, objectives, servers.VLLM_SERVED_NAME) if vllm is not None else None
    if vllm_target is None:
        for key in vllm_keys:
            s[key] = not_run(str(vllm_reason))
    else:
        say(f"vLLM /classify: {single}, {batch}, sweep, GRPO items")
        warm_texts = rendered_texts(tokenizer, warm)
        s[vllm_keys[0]] = throughput(
            vllm_target, rendered_texts(tokenizer, chat["vllm1"]), concurrency=c, per_request=1, warmup=warm_texts
        )
        s[vllm_keys[1]] = throughput(
            vllm_target,
            rendered_texts(tokenizer, chat["vllmb"]),
            concurrency=bc,
            per_request=bs,
            warmup=warm_texts,
        )
        for level in cfg.sweep:
            sweep["vllm"].append(
                throughput(
                    vllm_target,
                    rendered_texts(tokenizer, sweep_items[level][1]),
                    concurrency=level,
                    per_request=1,
                    warmup=warm_texts,
                )
            )
        s[vllm_keys[2]] = throughput(
            vllm_target,
            rendered_texts(tokenizer, flatten_groups(grpo)),
            concurrency=c,
            per_request=1,
            warmup=warm_texts,
        )
    backend_keys = (f"http_vllm_backend_{single}", "grpo_http_vllm_backend_groups")
    if backend is None:
        for key in backend_keys:
            s[key] = not_run(str(backend_reason))
    else:
        say(f"paretorm --backend vllm over HTTP: {single}, GRPO groups")
        children.settle()  # vLLM's server, measured just before, spins on for a second
        s[backend_keys[0]] = throughput(
            paretorm_items(backend.url, objectives, "paretorm-vllm-backend"),
            chat["backend"],
            concurrency=c,
            per_request=1,
            warmup=warm,
        )
        s[backend_keys[1]] = throughput(
            paretorm_groups(backend.url, objectives, "paretorm-vllm-backend-groups"),
            grpo,
            concurrency=grpo_clients,
            per_request=1,
            warmup=grpo_warm,
        )
    paired: dict[str, Any] = not_run(str(vllm_reason)) if vllm is None else not_run("--paired-rounds 0")
    if vllm is not None and cfg.paired_rounds:
        say(f"paired ratios: {cfg.paired_rounds} alternating rounds of paretorm and vLLM on fresh items")
        pairings = goal_pairings(cfg, source, tokenizer, service.url, vllm.url, backend and backend.url)
        paired = paired_ratios(pairings, cfg.paired_rounds, settle=children.settle)
    if backend is not None:
        children.stop(backend)
    for engine, key in (("paretorm", f"http_{single}"), ("vllm", vllm_keys[0])):
        if "items_per_s" in s[key]:  # the headline row is the sweep's top point
            sweep[engine] = sorted([*sweep[engine], dict(s[key])], key=lambda row: row["concurrency"])

    say(f"latency at {list(cfg.latency_loads)} of each engine's maximum and at the same rates for both "
        f"(open loop, {cfg.latency_seconds:.0f} s per point)")
    latency, same_rate = latency_sections(
        items_target,
        vllm_target,
        (s[f"http_{single}"], s[vllm_keys[0]]),
        source,
        tokenizer,
        loads=cfg.latency_loads,
        seconds=cfg.latency_seconds,
        seed=cfg.seed,
        settle=children.settle,
        why_not_theirs=str(vllm_reason),
    )
    say(f"single items at {SINGLES_PER_S:.0f}/s beside {batch} batch clients, each engine in turn")
    beside = beside_batches_section(
        {"paretorm": (items_target, source.chat),
         "vllm": str(vllm_reason) if vllm_target is None else (
             vllm_target, lambda count: rendered_texts(tokenizer, source.chat(count)))},
        {"paretorm": s[f"http_{batch}"].get("items_per_s", 0.0),
         "vllm": s[vllm_keys[1]].get("items_per_s", 0.0)},
        clients=bc, per_request=bs, duration_s=cfg.latency_seconds, seed=cfg.seed, settle=children.settle,
    )  # fmt: skip

    return {
        "meta": _meta(
            cfg,
            tuned,
            loaded,
            chat["inproc"],
            grpo,
            runtime,
            {"server": served, "in_process": cards["in-process"]},
            started,
            {
                child.name: child.ready_after_s
                for child in (service, no_share, naive, vllm, backend)
                if child is not None
            },
        ),
        "scenarios": s,
        "paired": paired,
        "concurrency_sweep": sweep,
        "latency": latency,
        "latency_same_rate": same_rate,
        "latency_beside_batches": beside,
    }


def _ready_or_dropped(
    child: ChildServer | None, reason: str | None, what: str, children: ProcessSet, timeout_s: float
) -> tuple[ChildServer | None, str | None]:
    """An optional server that fails to start is stopped and its rows report why, instead of failing the run."""
    if child is None:
        return None, reason
    try:
        _wait(child, timeout_s)
    except (RuntimeError, TimeoutError) as error:
        children.stop(child)
        return None, f"{what} did not start: {error}"
    return child, reason


def _wait(child: ChildServer, timeout_s: float) -> None:
    try:
        child.wait_ready(timeout_s)
    except (RuntimeError, TimeoutError) as error:
        raise type(error)(
            f"{error}\n--- last lines of {child.name}'s log ---\n{servers.log_tail(child.log_path)}"
        ) from None


def _tagged(summary: dict[str, Any], target: str, concurrency: int, per_request: int) -> dict[str, Any]:
    return {"target": target, "concurrency": concurrency, "items_per_request": per_request, **summary}


def _meta(
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
    settings = runtime.settings
    return {
        "model": cfg.shape.describe(),
        "model_revision": loaded.revision,
        "config": {**asdict(cfg), "shape": asdict(cfg.shape)},
        "dtype": cfg.dtype,
        "workload": {
            "chat_mean_tokens": round(sum(chat_lengths) / len(chat_lengths), 1),
            "grpo_shared_prompt_tokens": grpo_encoded[0].prefix_len,
            "grpo_mean_tokens": round(sum(e.num_tokens for e in grpo_encoded) / len(grpo_encoded), 1),
            "grpo_prompts": len(grpo),
            "grpo_group": cfg.grpo_group,
        },
        "service_settings": {
            "max_batch_tokens": settings.max_batch_tokens,
            "max_batch_items": settings.max_batch_items,
            "batch_wait_ms": settings.batch_wait_ms,
            "compile_forward": settings.compile_forward,
            "compiled": settings.compile_wanted,  # also vLLM's: --enforce-eager only where this is false
        },
        "forward": {  # as each chose it on this machine (the attention kernel by a measured probe)
            side: {"forward": card.forward, "attention": card.attention} for side, card in cards.items()
        },
        "service_env": SERVING_MALLOC_ENV,
        "bench_process_malloc_tuned": tuned,
        "vllm_env": servers.vllm_env(),
        "ready_by_s": {  # upper bounds: children load in parallel and are polled one after another
            name: round(value, 1) if value else None for name, value in ready_s.items()
        },
        "host": {
            "cpus": len(os.sched_getaffinity(0)),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "load_average_at_end": [
            round(v, 2) for v in os.getloadavg()
        ],  # other work on the machine skews numbers
        "wall_s": round(time.perf_counter() - started, 1),
    }
