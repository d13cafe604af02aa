"""The CPU budget read from cgroups, and the torch thread count the service and the trainers take from it.

Fake `/proc/self` and cgroup trees cover the layouts a container meets (cgroup v2 with and without its own
namespace, v1 with the cpu controller joined to cpuacct, hybrid hosts, nested quotas); a real cgroup with a
1-CPU quota, where this machine lets the tests make one, proves the reading and the start-up of
`paretorm serve` on the kernel's own files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.cpu_budget import CpuBudget, cgroup_cpu_limit, choose_torch_threads, cpu_list, vllm_cpu_binding
from tests.support.service_process import PARETORM, ServiceProcess

V2_MOUNT = "35 24 0:30 {root} /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"
V1_CPU_MOUNT = "40 30 0:35 {root} /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct"
V1_MEMORY_MOUNT = "41 30 0:36 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"
OTHER_MOUNT = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw"


def fake_host(
    tmp_path: Path, mountinfo: list[str], cgroup: list[str], files: dict[str, str]
) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "root"
    proc.mkdir()
    (proc / "mountinfo").write_text("\n".join(mountinfo) + "\n")
    (proc / "cgroup").write_text("\n".join(cgroup) + "\n")
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return proc, root


def test_v2_the_tightest_quota_on_the_way_up_counts(tmp_path: Path) -> None:
    proc, root = fake_host(
        tmp_path, [OTHER_MOUNT, V2_MOUNT.format(root="/")], ["0::/kubepods/pod1/ctr"],
        {
            "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000",
            "/sys/fs/cgroup/kubepods/pod1/cpu.max": "200000 100000",
            "/sys/fs/cgroup/kubepods/cpu.max": "max 100000",
            "/sys/fs/cgroup/cpu.max": "800000 100000",
        },
    )  # fmt: skip
    assert cgroup_cpu_limit(proc, root) == 2.0


def test_v2_in_a_container_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    proc, root = fake_host(
        tmp_path, [V2_MOUNT.format(root="/")], ["0::/"], {"/sys/fs/cgroup/cpu.max": "150000 100000"}
    )
    assert cgroup_cpu_limit(proc, root) == 1.5


def test_v1_docker_without_a_namespace_maps_its_path_through_the_mount_root(tmp_path: Path) -> None:
    # The container sees its own cgroup mounted at the top, while /proc/self/cgroup names the host's path.
    proc, root = fake_host(
        tmp_path, [V1_CPU_MOUNT.format(root="/docker/abc"), V1_MEMORY_MOUNT],
        ["5:memory:/docker/abc", "4:cpu,cpuacct:/docker/abc"],
        {"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "50000",
         "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000"},
    )  # fmt: skip
    assert cgroup_cpu_limit(proc, root) == 0.5


def test_v1_unlimited_and_a_hybrid_host_whose_v2_tree_has_no_cpu_controller(tmp_path: Path) -> None:
    proc, root = fake_host(
        tmp_path,
        [V1_CPU_MOUNT.format(root="/"), "36 24 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw"],
        ["4:cpu,cpuacct:/user.slice", "0::/user.slice"],
        {"/sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_quota_us": "-1",
         "/sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_period_us": "100000"},
    )  # fmt: skip
    assert cgroup_cpu_limit(proc, root) is None
    (root / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us").write_text("300000\n")
    (root / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(proc, root) == 3.0


@pytest.mark.parametrize("text", ["", "garbage", "100000 0", "max", "12 x"])
def test_unreadable_limits_mean_no_limit_not_a_crash(tmp_path: Path, text: str) -> None:
    proc, root = fake_host(tmp_path, [V2_MOUNT.format(root="/")], ["0::/"], {"/sys/fs/cgroup/cpu.max": text})
    assert cgroup_cpu_limit(proc, root) is None


def test_no_proc_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path / "nothing", tmp_path) is None


@pytest.mark.parametrize(
    ("cores", "quota", "cpus"),
    [(2, None, 2), (2, 1.0, 1), (2, 1.5, 2), (64, 4.0, 4), (4, 0.2, 1), (4, 8.0, 4)],
)
def test_a_fractional_quota_rounds_up_within_the_cores(cores: int, quota: float | None, cpus: int) -> None:
    assert CpuBudget(cores=cores, quota=quota).cpus == cpus


def test_the_thread_count_follows_setting_then_omp_then_the_quota() -> None:
    capped = CpuBudget(cores=64, quota=4.0)
    assert choose_torch_threads(3, {"OMP_NUM_THREADS": "8"}, capped, 32)[0] == 3
    assert choose_torch_threads(None, {"OMP_NUM_THREADS": "8"}, capped, 8) == (8, "OMP_NUM_THREADS")
    threads, reason = choose_torch_threads(None, {}, capped, 32)
    assert threads == 4 and "quota" in reason and "--torch-threads" in reason
    assert choose_torch_threads(None, {}, CpuBudget(cores=64, quota=None), 32)[0] == 32
    assert choose_torch_threads(None, {}, CpuBudget(cores=64, quota=48.0), 32)[0] == 32


def test_vllm_is_bound_only_when_something_caps_its_threads() -> None:
    cores = sorted(os.sched_getaffinity(0))
    assert vllm_cpu_binding(None, CpuBudget(cores=len(cores), quota=None)) is None
    assert vllm_cpu_binding(1, CpuBudget(cores=len(cores), quota=None)) == str(cores[0])
    assert vllm_cpu_binding(None, CpuBudget(cores=len(cores), quota=1.0)) == str(cores[0])


def test_the_cpu_list_names_every_cpu_of_the_mask_one_by_one() -> None:
    cores = sorted(os.sched_getaffinity(0))
    assert cpu_list() == ",".join(str(core) for core in cores)  # never "first-last": masks may have gaps
    assert cpu_list(1) == str(cores[0])


@contextmanager
def cpu_quota_cgroup(cpus: float) -> Iterator[Path]:
    """A real cgroup with a CPU quota (v1 cpu controller or v2 `cpu.max`); skips where this machine lets
    the tests make none (not root, no writable cpu controller)."""
    name = f"paretorm-test-{uuid.uuid4().hex[:8]}"
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    try:
        if (v1 / "cpu.cfs_quota_us").exists():
            group = v1 / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text(str(int(cpus * 100000)))
        elif "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
            group = v2 / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{int(cpus * 100000)} 100000")
        else:
            pytest.skip("no writable cgroup cpu controller here")
    except OSError as error:
        pytest.skip(f"cannot make a cgroup here: {error}")
    try:
        yield group
    finally:
        for _ in range(50):  # the processes put in it have exited; the kernel may take a moment to agree
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def in_cgroup(group: Path) -> list[str]:
    """A launcher that joins `group` and then execs the command after it."""
    return ["/bin/sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "in-cgroup"]


def test_a_real_cgroup_quota_is_read_and_caps_torch_threads() -> None:
    with cpu_quota_cgroup(1.0) as group:
        probe = "\n".join([
            "from service.cpu_budget import apply_torch_threads, cgroup_cpu_limit",
            "print(cgroup_cpu_limit())",
            "print(apply_torch_threads(None))",
        ])  # fmt: skip
        output = subprocess.run(
            [*in_cgroup(group), sys.executable, "-c", probe], capture_output=True, text=True, check=True,
            env={key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"},
        ).stdout.splitlines()  # fmt: skip
    assert output[0] == "1.0"
    assert output[1].startswith("1 (capped by the cgroup CPU quota")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a 1-CPU quota caps nothing on one core")
@pytest.mark.skipif("OMP_NUM_THREADS" in os.environ, reason="OMP_NUM_THREADS is set; it wins over the quota")
@pytest.mark.parametrize("engine_process", [False, True], ids=["one process", "engine process"])
def test_serve_in_a_one_cpu_container_runs_its_forwards_on_one_thread(
    tiny_armorm_dir: Path, tmp_path: Path, engine_process: bool
) -> None:
    log = tmp_path / "serve.log"
    args = ["--compile-forward", "off", "--no-tune-batch-tokens"]
    args += ["--engine-process"] if engine_process else []
    with cpu_quota_cgroup(1.0) as group:
        launcher = [*in_cgroup(group), PARETORM]
        with ServiceProcess(tiny_armorm_dir, args=args, log_path=log, launcher=launcher) as service:
            body = {"items": [{"prompt": "Hi?", "response": "Hi."}]}
            answer = httpx.post(service.url + "/v1/score", json=body)
            assert answer.status_code == 200, answer.text
    text = log.read_text()
    where = "runtime (engine): " if engine_process else "runtime: "  # where the forwards run
    assert where + "torch threads: 1 (capped by the cgroup CPU quota, 1 of the" in text, text[-2000:]
    assert "threads 1 (fixed)" in text
