"""How many CPUs this process may use, and the torch thread count that follows from it.

torch sizes its intra-op pool by the cores it can see (one per physical core, or `OMP_NUM_THREADS`). A
container's CPU limit (Kubernetes `limits.cpu`, `docker run --cpus`) is not a core count but a cgroup CFS
quota: on a node of 32 cores (64 hardware threads) with a limit of 4 CPUs, torch starts 32 threads, the
quota is spent ~12 ms into each 100 ms period, and the whole team is throttled until the next one. The
budget here is the affinity mask capped by the quota of the process's own cgroup and every ancestor's,
read from cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`).

Measured on a 2-core AMD EPYC (AVX2, float32, the bench model's packed forward): under a quota of 1.0 CPU,
2 threads took 1179 ms per 8-item batch and 179 ms per lone item, 1 thread 918-928 ms and 130-149 ms;
under 1.5 CPUs, 2 threads won (722-815 ms against 1064-1111), so a fractional quota rounds up.

The tokenizers' Rust thread pool needs nothing from here: Rust's `available_parallelism` reads the same
quota (a batch encode in a 0.5-CPU cgroup on 2 cores started 1 worker thread, outside it 2).

No torch import here: the trainer and the service call `apply_torch_threads` where torch is loaded anyway.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuBudget",
    "apply_torch_threads",
    "cgroup_cpu_limit",
    "choose_torch_threads",
    "cpu_budget",
    "cpu_list",
    "vllm_cpu_binding",
]


@dataclass(frozen=True, slots=True)
class CpuBudget:
    """`cores`: CPUs in the affinity mask; `quota`: the tightest cgroup CPU limit (None: unlimited)."""

    cores: int
    quota: float | None

    @property
    def cpus(self) -> int:
        """Whole CPUs worth a thread each: the quota rounded up (a thread on the fraction still gains), at
        least 1, at most the cores."""
        if self.quota is None:
            return self.cores
        return max(1, min(self.cores, math.ceil(self.quota - 1e-9)))


def cpu_budget(proc: Path = Path("/proc/self"), fs_root: Path = Path("/")) -> CpuBudget:
    """This process's budget (`proc` and `fs_root` point elsewhere only in tests)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return CpuBudget(cores=cores, quota=cgroup_cpu_limit(proc, fs_root))


def cgroup_cpu_limit(proc: Path = Path("/proc/self"), fs_root: Path = Path("/")) -> float | None:
    """The smallest CPU quota on the way from this process's cgroup up to its hierarchy's mount, in CPUs;
    None when there is none (or no cgroup file system can be read: not Linux, an unusual mount)."""
    try:
        mounts = (proc / "mountinfo").read_text().splitlines()
        memberships = (proc / "cgroup").read_text().splitlines()
    except OSError:
        return None
    v1_paths, v2_path = _memberships(memberships)
    limits: list[float] = []
    for root, mount_point, fstype, options in _cgroup_mounts(mounts):
        if fstype == "cgroup2" and v2_path is not None:
            limits += _limits_along(fs_root, root, mount_point, v2_path, _v2_limit)
        elif fstype == "cgroup" and "cpu" in options and "cpu" in v1_paths:
            limits += _limits_along(fs_root, root, mount_point, v1_paths["cpu"], _v1_limit)
    return min(limits, default=None)


def _memberships(lines: list[str]) -> tuple[dict[str, str], str | None]:
    """/proc/self/cgroup (`id:controllers:path`): the v1 path per controller and the v2 path."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        for controller in controllers.split(","):
            v1[controller] = path
    return v1, v2


def _cgroup_mounts(lines: list[str]) -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fstype, super options) of each cgroup mount in /proc/self/mountinfo, whose
    lines read `id parent dev root mount-point options [optional...] - fstype source super-options`."""
    mounts = []
    for line in lines:
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((fields[3], fields[4], tail[0], set(tail[2].split(","))))
    return mounts


def _limits_along(
    fs_root: Path, root: str, mount_point: str, path: str, read: Callable[[Path], float | None]
) -> list[float]:
    """The limits found in `path`'s directory and each ancestor up to the mount. In a container the
    mount's root is often the container's own cgroup (`root` == `path`), so the walk starts at the mount."""
    relative = path[len(root):] if path.startswith(root) else ""
    directory = fs_root / mount_point.lstrip("/") / relative.strip("/")
    top = fs_root / mount_point.lstrip("/")
    limits = []
    while True:
        limit = read(directory)
        if limit is not None:
            limits.append(limit)
        if directory == top or top not in directory.parents:
            return limits
        directory = directory.parent


def _v2_limit(directory: Path) -> float | None:
    """`cpu.max` reads `max 100000` (none) or `QUOTA PERIOD` in microseconds."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_limit(directory: Path) -> float | None:
    """`cpu.cfs_quota_us` is -1 (none) or the microseconds per `cpu.cfs_period_us`."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def choose_torch_threads(
    setting: int | None, env: Mapping[str, str], budget: CpuBudget, torch_default: int
) -> tuple[int, str]:
    """The thread count and why: the setting if given, else `OMP_NUM_THREADS` (torch already read it), else
    torch's default capped by the budget."""
    if setting is not None:
        return setting, "set by --torch-threads / PARETORM_TORCH_THREADS"
    if env.get("OMP_NUM_THREADS"):
        return torch_default, "OMP_NUM_THREADS"
    if budget.cpus < torch_default:
        return budget.cpus, (
            f"capped by the cgroup CPU quota, {budget.quota:g} of the {budget.cores} CPUs in the affinity "
            "mask; --torch-threads or OMP_NUM_THREADS overrides"
        )
    quota = "no cgroup CPU quota" if budget.quota is None else f"cgroup CPU quota {budget.quota:g} CPUs"
    return torch_default, f"torch's default for {budget.cores} cores; {quota}"


def vllm_cpu_binding(setting: int | None, budget: CpuBudget | None = None) -> str | None:
    """The CPUs for `VLLM_CPU_OMP_THREADS_BIND` when a thread count is set or a CPU quota caps it: the first
    that many of the affinity mask (vLLM's CPU worker binds one OpenMP thread per listed CPU and sets the
    thread count to match, for the whole process it runs in). None: no cap, leave vLLM's own choice."""
    budget = budget or cpu_budget()
    count = setting if setting is not None else budget.cpus if budget.cpus < budget.cores else None
    if count is None:
        return None
    return cpu_list(count, budget)


def cpu_list(count: int | None = None, budget: CpuBudget | None = None) -> str:
    """The first `count` CPUs of the affinity mask (all of them by default), listed one by one as
    `VLLM_CPU_OMP_THREADS_BIND` takes them: a range "first-last" over a mask such as {0, 2, 5} would take
    in CPUs outside it."""
    if hasattr(os, "sched_getaffinity"):
        cores = sorted(os.sched_getaffinity(0))
    else:
        cores = list(range((budget or cpu_budget()).cores))
    return ",".join(str(core) for core in cores[:count])


def apply_torch_threads(setting: int | None, *, budget: CpuBudget | None = None) -> str:
    """Set torch's intra-op thread count for this process's forwards; returns the count and the reason,
    for the start-up log."""
    import torch

    budget = budget or cpu_budget()
    threads, reason = choose_torch_threads(setting, os.environ, budget, torch.get_num_threads())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return f"{threads} ({reason})"
