"""One benchmark run, start to finish: build the model, start the servers, measure side by side, clean up.

Order matters for fairness: every child server is started first (in parallel) and is idle while another
scenario runs, so scenarios never overlap; each timed scenario gets its own fresh traffic (see
`workload.WorkloadSource`); the untimed fp32 exactness check runs while the servers load. Children are
stopped in `finally` (and at interpreter exit), and the scratch directory is removed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clients.client import RewardClient
from clients.protocol import ModelInfo
from service.bench import scenarios_inprocess as inproc
from service.bench import servers
from service.bench.beside_batches import SINGLES_PER_S, beside_batches_section
from service.bench.checkpoints import ModelShape, build_bench_model, export_sequence_classifier
from service.bench.latency_section import latency_sections
from service.bench.loadgen import Target
from service.bench.paired import goal_pairings, grpo_client_count, http_pairing, paired_ratios
from service.bench.processes import ChildServer, ProcessSet
from service.bench.report import not_run
from service.bench.run_meta import run_meta
from service.bench.scenarios_http import throughput
from service.bench.targets import paretorm_groups, paretorm_items, vllm_classify
from service.bench.workload import (
    ChatItem,
    GrpoGroup,
    WorkloadSource,
    flatten_groups,
    rendered_texts,
)
from service.gc_freeze import freeze_startup_heap
from service.malloc import SERVING_MALLOC_ENV, tune_malloc
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
    attention_kernel: str = "auto"  # pinned in every paretorm process; auto: probed once before they start
    ready_timeout_s: float = 300.0

    @property
    def single(self) -> str:
        """The headline shape's name, e.g. `32x1` (clients x items per request)."""
        return f"{self.concurrency}x1"

    @property
    def batch(self) -> str:
        """The batched shape's name, e.g. `4x64`."""
        return f"{self.batch_clients}x{self.batch_size}"


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


@dataclass
class _Servers:
    """The child servers of a run; vLLM and `--backend vllm` are None with the reason when they cannot run."""

    service: ChildServer
    no_share: ChildServer
    naive: ChildServer
    vllm: ChildServer | None
    backend: ChildServer | None
    vllm_reason: str | None
    backend_reason: str | None

    def ready_by_s(self) -> dict[str, float | None]:
        children = (self.service, self.no_share, self.naive, self.vllm, self.backend)
        return {child.name: child.ready_after_s for child in children if child is not None}


@dataclass(frozen=True)
class _Traffic:
    """Every timed scenario's own fresh items (`workload.WorkloadSource`), generated once before any runs."""

    warm: list[ChatItem]
    chat: dict[str, list[ChatItem]]
    sweep: dict[int, tuple[list[ChatItem], list[ChatItem]]]  # level -> (paretorm's, vLLM's)
    grpo: list[GrpoGroup]
    grpo_warm: list[GrpoGroup]  # never timed: keeps caches honest
    long_tail: list[ChatItem]
    grpo_clients: int


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
    cfg = _with_quiet_kernel(cfg, say)
    srv = _start_servers(cfg, model_dir, work, logs, children)
    say("loading the in-process model and generating traffic")
    loaded = inproc.load_model(model_dir, cfg.dtype)
    tokenizer = loaded.tokenizer
    source = WorkloadSource(tokenizer, cfg.seed)
    traffic = _traffic(cfg, source)
    freeze_startup_heap()  # as `paretorm serve` does once ready: in-process rows without gc's long walks
    say("fp32 exactness check (prompt sharing on vs off) while the servers load")
    exactness = inproc.exactness_fp32(model_dir, traffic.grpo[: max(1, min(4, len(traffic.grpo)))])
    served = _wait_for_servers(cfg, srv, children)

    s: dict[str, Any] = {}
    sweep: dict[str, list[dict[str, Any]]] = {"paretorm": [], "vllm": []}
    runtime, in_process_card = _in_process_rows(cfg, loaded, traffic, s, say)
    s["exactness_fp32"] = exactness
    _paretorm_http_rows(cfg, srv, traffic, s, sweep, children, say)
    vllm_target = _vllm_rows(cfg, srv, traffic, tokenizer, s, sweep, say)
    _backend_rows(cfg, srv, traffic, s, children, say)
    budget = served.batch_tokens or runtime.batcher.batch_tokens
    paired = _paired_rows(cfg, srv, source, loaded, (served.attention or "auto", budget), children, say)
    if srv.backend is not None:
        children.stop(srv.backend)
    for engine, key in (("paretorm", f"http_{cfg.single}"), ("vllm", f"vllm_classify_{cfg.single}")):
        if "items_per_s" in s[key]:  # the headline row is the sweep's top point
            sweep[engine] = sorted([*sweep[engine], dict(s[key])], key=lambda row: row["concurrency"])
    latency = _latency_rows(cfg, srv, vllm_target, s, source, tokenizer, children, say)
    cards = {"server": served, "in_process": in_process_card}
    meta = run_meta(cfg, tuned, loaded, traffic.chat["inproc"], traffic.grpo, runtime, cards, started,
                 srv.ready_by_s())  # fmt: skip
    return {"meta": meta, "scenarios": s, "paired": paired, "concurrency_sweep": sweep, **latency}


def _with_quiet_kernel(cfg: BenchConfig, say: Callable[[str], None]) -> BenchConfig:
    """`--attention-kernel auto`: the kernel probe run once here, before any server starts, and its choice
    pinned in every paretorm process. The children start together, so each one's own probe would time the
    kernels on cores busy with the others' loading, and there the ranking flips (2-core AVX2 EPYC, fp32:
    `sdpa` 19-21 ms quiet against `paged` 25-27; `paged` 46-47 against `sdpa` 60-67 beside two busy
    processes): one run's server took `paged` and its bench process `matmul`."""
    if cfg.attention_kernel != "auto":
        return cfg
    import torch

    from service.model.attention_probe import choose_kernel

    shape, dtype = cfg.shape, getattr(torch, cfg.dtype)  # "float32" or "bfloat16", resolved by the CLI
    kernel = choose_kernel(torch.device("cpu"), dtype, shape.heads, shape.heads, shape.hidden // shape.heads)
    say(f"attention kernel {kernel}: probed here before any server started, pinned in every paretorm process")
    return replace(cfg, attention_kernel=kernel)


def _paired_rows(
    cfg: BenchConfig,
    srv: _Servers,
    source: WorkloadSource,
    loaded: Any,
    served_as: tuple[str, int],
    children: ProcessSet,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The goal ratios as alternating rounds: HTTP against in-process always (the in-process side with the
    server's attention kernel and batch budget, `served_as`), against vLLM where it runs."""
    if not cfg.paired_rounds:
        return not_run("--paired-rounds 0")
    kernel, budget = served_as
    runtime = inproc.make_runtime(loaded, cfg.dtype, share_prompts=True, attention_kernel=kernel)
    backend = runtime.batcher.backend
    in_process = inproc.InProcessTarget("in-process", loaded, backend, runtime.settings, budget)
    pairings = [http_pairing(cfg, source, srv.service.url, in_process)]
    if srv.vllm is not None:
        pairings += goal_pairings(cfg, source, loaded.tokenizer, srv.service.url, srv.vllm.url,
                                  srv.backend and srv.backend.url)  # fmt: skip
    say(f"paired ratios: {cfg.paired_rounds} alternating rounds of {len(pairings)} pairings on fresh items")
    paired = paired_ratios(pairings, cfg.paired_rounds, settle=children.settle)
    return paired if srv.vllm is not None else {**not_run(f"against vLLM: {srv.vllm_reason}"), **paired}


def _start_servers(
    cfg: BenchConfig, model_dir: Path, work: Path, logs: Path, children: ProcessSet
) -> _Servers:
    """Every child server, started at once so they load in parallel (vLLM's pair only where it can run)."""
    vllm_reason = "--no-vllm given" if not cfg.vllm else servers.vllm_missing_reason()
    service = children.add(
        servers.paretorm_server(model_dir, cfg.dtype, share_prompts=True, logs=logs, cache_dir=work,
                                attention_kernel=cfg.attention_kernel)
    )
    no_share = children.add(
        servers.paretorm_server(model_dir, cfg.dtype, share_prompts=False, logs=logs, cache_dir=work,
                                attention_kernel=cfg.attention_kernel)
    )
    naive = children.add(servers.naive_server(model_dir, cfg.dtype, logs=logs))
    vllm: ChildServer | None = None
    backend: ChildServer | None = None  # the service with --backend vllm
    if vllm_reason is None:
        seqcls = export_sequence_classifier(model_dir, work / "vllm-seqcls")
        compiled = ServiceSettings().compile_wanted  # as the paretorm children decide from the environment
        vllm = children.add(servers.vllm_server(seqcls, cfg.dtype, logs=logs, compiled=compiled))
        backend = children.add(
            servers.paretorm_vllm_backend_server(model_dir, cfg.dtype, logs=logs, cache_dir=work)
        )
    for child in (service, no_share, naive, *([vllm, backend] if vllm else [])):
        child.start()
    return _Servers(service, no_share, naive, vllm, backend, vllm_reason, vllm_reason)


def _traffic(cfg: BenchConfig, source: WorkloadSource) -> _Traffic:
    c, bc, bs = cfg.concurrency, cfg.batch_clients, cfg.batch_size
    return _Traffic(
        warm=source.chat(max(c, bc * bs)),
        chat={name: source.chat(cfg.items)
              for name in ("inproc", "http1", "httpb", "vllm1", "vllmb", "naive", "backend")},
        sweep={level: (source.chat(_sweep_items(cfg, level)), source.chat(_sweep_items(cfg, level)))
               for level in cfg.sweep},
        grpo=source.grpo(cfg.grpo_prompts, cfg.grpo_group, cfg.shared_tokens),
        long_tail=source.long_tail(cfg.long_tail),
        grpo_warm=source.grpo(1, cfg.grpo_group, cfg.shared_tokens),
        grpo_clients=grpo_client_count(cfg.grpo_group),
    )  # fmt: skip


def _sweep_items(cfg: BenchConfig, level: int) -> int:
    return max(cfg.items // 2, 4 * level)


def _wait_for_servers(cfg: BenchConfig, srv: _Servers, children: ProcessSet) -> ModelInfo:
    """Wait for the required servers (a failure ends the run) and the optional ones (a failure drops them);
    the service's model card: which forward and attention kernel it chose."""
    for child in (srv.service, srv.no_share, srv.naive):
        _wait(child, cfg.ready_timeout_s)
    with RewardClient(srv.service.url) as client:
        served = client.model_info()
    srv.vllm, srv.vllm_reason = _ready_or_dropped(
        srv.vllm, srv.vllm_reason, "the vLLM server", children, cfg.ready_timeout_s
    )
    srv.backend, srv.backend_reason = _ready_or_dropped(
        srv.backend, srv.backend_reason, "paretorm --backend vllm", children, cfg.ready_timeout_s
    )
    return served


def _in_process_rows(
    cfg: BenchConfig, loaded: Any, traffic: _Traffic, s: dict[str, Any], say: Callable[[str], None]
) -> tuple[Any, ModelInfo]:
    """PAMA, the scorer in-process (packed and padded), GRPO sharing on and off, padding; the packed
    runtime and its card."""
    single, c = cfg.single, cfg.concurrency
    say("PAMA 4096 x 19")
    s["pama_4096x19"] = inproc.pama_timing(objectives=cfg.shape.objectives)
    cards: dict[str, ModelInfo] = {}
    runtimes: dict[str, Any] = {}
    for packed, key, target in ((True, f"in_process_{single}", "in-process"),
                                (False, f"in_process_padded_{single}", "in-process --no-packed")):
        say(f"{target} {single}" + ("" if packed else " (transformers' padded forward)"))
        runtime = runtimes[target] = inproc.make_runtime(
            loaded, cfg.dtype, share_prompts=True, packed=packed, attention_kernel=cfg.attention_kernel
        )
        cards[target] = runtime.card
        asyncio.run(runtime.warm_up())
        result = inproc.scorer_throughput(runtime, inproc.item_requests(traffic.chat["inproc"], 1), c)
        s[key] = _tagged(result.summary(), target, c, 1)
    say("GRPO in-process, sharing on and off")
    for share in (True, False):
        rt = inproc.make_runtime(
            loaded, cfg.dtype, share_prompts=share, attention_kernel=cfg.attention_kernel
        )
        key = "grpo_in_process_shared" if share else "grpo_in_process_unshared"
        result = inproc.scorer_throughput(rt, inproc.group_requests(traffic.grpo), traffic.grpo_clients)
        s[key] = _tagged(result.summary(), "in-process", traffic.grpo_clients, cfg.grpo_group)
    say("padding on long-tailed lengths")
    s["padding_long_tail"] = inproc.padding_scenario(loaded, cfg.dtype, traffic.long_tail)
    return runtimes["in-process"], cards["in-process"]


def _paretorm_http_rows(
    cfg: BenchConfig,
    srv: _Servers,
    traffic: _Traffic,
    s: dict[str, Any],
    sweep: dict[str, list[dict[str, Any]]],
    children: ProcessSet,
    say: Callable[[str], None],
) -> None:
    """The service over HTTP (headline shapes, sweep, GRPO three ways), then the naive floor."""
    c, bc, bs, warm = cfg.concurrency, cfg.batch_clients, cfg.batch_size, traffic.warm
    objectives = cfg.shape.objectives
    say(f"paretorm over HTTP: {cfg.single}, {cfg.batch}, sweep {list(cfg.sweep)}")
    items_target = paretorm_items(srv.service.url, objectives)
    s[f"http_{cfg.single}"] = throughput(items_target, traffic.chat["http1"], concurrency=c, per_request=1,
                                         warmup=warm)  # fmt: skip
    s[f"http_{cfg.batch}"] = throughput(items_target, traffic.chat["httpb"], concurrency=bc, per_request=bs,
                                        warmup=warm)  # fmt: skip
    for level in cfg.sweep:
        sweep["paretorm"].append(
            throughput(items_target, traffic.sweep[level][0], concurrency=level, per_request=1, warmup=warm)
        )
    say("GRPO over HTTP: group requests, single-item requests, sharing off")
    grpo, groups = traffic.grpo, {"concurrency": traffic.grpo_clients, "per_request": 1,
                                  "warmup": traffic.grpo_warm}  # fmt: skip
    s["grpo_http_groups"] = throughput(paretorm_groups(srv.service.url, objectives), grpo, **groups)
    s["grpo_http_items"] = throughput(items_target, flatten_groups(grpo), concurrency=c, per_request=1,
                                      warmup=warm)  # fmt: skip
    s["grpo_http_unshared"] = throughput(paretorm_groups(srv.no_share.url, objectives), grpo, **groups)
    children.stop(srv.no_share)
    say(f"naive floor {cfg.single}")
    naive = paretorm_items(srv.naive.url, objectives, "naive")
    s[f"naive_{cfg.single}"] = throughput(naive, traffic.chat["naive"], concurrency=c, per_request=1,
                                          warmup=warm[:c])  # fmt: skip
    children.stop(srv.naive)


def _vllm_rows(
    cfg: BenchConfig,
    srv: _Servers,
    traffic: _Traffic,
    tokenizer: Any,
    s: dict[str, Any],
    sweep: dict[str, list[dict[str, Any]]],
    say: Callable[[str], None],
) -> Target | None:
    """vLLM's `/classify` on the same shapes (chat-templated text); its target, None when it did not run."""
    keys = (f"vllm_classify_{cfg.single}", f"vllm_classify_{cfg.batch}", "vllm_grpo_items")
    if srv.vllm is None:
        for key in keys:
            s[key] = not_run(str(srv.vllm_reason))
        return None
    target = vllm_classify(srv.vllm.url, cfg.shape.objectives, servers.VLLM_SERVED_NAME)
    say(f"vLLM /classify: {cfg.single}, {cfg.batch}, sweep, GRPO items")
    warm = rendered_texts(tokenizer, traffic.warm)

    def texts(items: list[ChatItem]) -> list[str]:
        return rendered_texts(tokenizer, items)

    c = cfg.concurrency
    s[keys[0]] = throughput(target, texts(traffic.chat["vllm1"]), concurrency=c, per_request=1, warmup=warm)
    s[keys[1]] = throughput(target, texts(traffic.chat["vllmb"]), concurrency=cfg.batch_clients,
                            per_request=cfg.batch_size, warmup=warm)  # fmt: skip
    for level in cfg.sweep:
        sweep["vllm"].append(
            throughput(target, texts(traffic.sweep[level][1]), concurrency=level, per_request=1, warmup=warm)
        )
    s[keys[2]] = throughput(target, texts(flatten_groups(traffic.grpo)), concurrency=c, per_request=1,
                            warmup=warm)  # fmt: skip
    return target


def _backend_rows(
    cfg: BenchConfig,
    srv: _Servers,
    traffic: _Traffic,
    s: dict[str, Any],
    children: ProcessSet,
    say: Callable[[str], None],
) -> None:
    """The service with `--backend vllm`: 32 x 1 and GRPO groups."""
    keys = (f"http_vllm_backend_{cfg.single}", "grpo_http_vllm_backend_groups")
    if srv.backend is None:
        for key in keys:
            s[key] = not_run(str(srv.backend_reason))
        return
    say(f"paretorm --backend vllm over HTTP: {cfg.single}, GRPO groups")
    children.settle()  # vLLM's server, measured just before, spins on for a second
    url, objectives = srv.backend.url, cfg.shape.objectives
    s[keys[0]] = throughput(paretorm_items(url, objectives, "paretorm-vllm-backend"), traffic.chat["backend"],
                            concurrency=cfg.concurrency, per_request=1, warmup=traffic.warm)  # fmt: skip
    groups = paretorm_groups(url, objectives, "paretorm-vllm-backend-groups")
    s[keys[1]] = throughput(groups, traffic.grpo, concurrency=traffic.grpo_clients, per_request=1,
                            warmup=traffic.grpo_warm)  # fmt: skip


def _latency_rows(
    cfg: BenchConfig,
    srv: _Servers,
    vllm_target: Target | None,
    s: dict[str, Any],
    source: WorkloadSource,
    tokenizer: Any,
    children: ProcessSet,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Open-loop latency at loads of each engine's maximum and at equal rates, then single items beside
    batch clients: the result's `latency`, `latency_same_rate` and `latency_beside_batches`."""
    items_target = paretorm_items(srv.service.url, cfg.shape.objectives)
    theirs_single, theirs_batch = f"vllm_classify_{cfg.single}", f"vllm_classify_{cfg.batch}"
    say(f"latency at {list(cfg.latency_loads)} of each engine's maximum and at the same rates for both "
        f"(open loop, {cfg.latency_seconds:.0f} s per point)")
    latency, same_rate = latency_sections(
        items_target, vllm_target, (s[f"http_{cfg.single}"], s[theirs_single]), source, tokenizer,
        loads=cfg.latency_loads, seconds=cfg.latency_seconds, seed=cfg.seed, settle=children.settle,
        why_not_theirs=str(srv.vllm_reason),
    )  # fmt: skip
    say(f"single items at {SINGLES_PER_S:.0f}/s beside {cfg.batch} batch clients, each engine in turn")
    beside = beside_batches_section(
        {"paretorm": (items_target, source.chat),
         "vllm": str(srv.vllm_reason) if vllm_target is None else (
             vllm_target, lambda count: rendered_texts(tokenizer, source.chat(count)))},
        {"paretorm": s[f"http_{cfg.batch}"].get("items_per_s", 0.0),
         "vllm": s[theirs_batch].get("items_per_s", 0.0)},
        clients=cfg.batch_clients, per_request=cfg.batch_size, duration_s=cfg.latency_seconds, seed=cfg.seed,
        settle=children.settle,
    )  # fmt: skip
    return {"latency": latency, "latency_same_rate": same_rate, "latency_beside_batches": beside}


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
