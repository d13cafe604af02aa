"""The benchmark's building blocks: workload sizes in tokens, child-process cleanup, ratio reporting."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import pytest

from service.bench.processes import ChildServer, ProcessSet
from service.bench.report import compute_ratios
from service.bench.scenarios_inprocess import fifo_padding_ratio
from service.bench.workload import WorkloadSource, flatten_groups, token_lengths


def test_workload_hits_the_token_sizes_and_is_deterministic(tiny_tokenizer) -> None:
    from service.model.tiny import derive_gate_pattern
    from service.scoring.encoding import ChatEncoder, EncodingPolicy

    source = WorkloadSource(tiny_tokenizer, seed=3)
    chat, groups = source.chat(40), source.grpo(2, 4, shared_tokens=428)
    lengths = token_lengths(tiny_tokenizer, chat)
    assert 326 <= statistics.mean(lengths) <= 346 and min(lengths) >= 310 and max(lengths) <= 362
    encoder = ChatEncoder(
        tiny_tokenizer,
        gate_pattern=derive_gate_pattern(tiny_tokenizer),
        bos_token_id=tiny_tokenizer.bos_token_id,
    )
    items = flatten_groups(groups)
    encoded = encoder.encode_conversations(
        [
            [{"role": "user", "content": i.prompt}, {"role": "assistant", "content": i.response}]
            for i in items
        ],
        EncodingPolicy(4096, "error"),
        labels=["x"] * len(items),
    )
    assert {e.prefix_len for e in encoded} == {428}  # exactly the shared prompt the issue names
    assert len({e.prefix_key() for e in encoded}) == 2
    assert WorkloadSource(tiny_tokenizer, seed=3).chat(40) == chat
    tail = token_lengths(tiny_tokenizer, source.long_tail(200))
    assert max(tail) > 3 * statistics.median(tail)  # long-tailed, as the padding scenario needs


def test_fifo_padding_ratio_counts_padded_over_real_tokens() -> None:
    assert fifo_padding_ratio([10, 10, 10], max_batch_items=8, max_batch_tokens=1000) == 1.0
    # [10, 30] pads to 60 of 40 real; [20] alone (item cap 2) is exact.
    assert fifo_padding_ratio([10, 30, 20], max_batch_items=2, max_batch_tokens=1000) == pytest.approx(
        80 / 60
    )


def test_process_set_stops_children_and_grandchildren(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    with ProcessSet() as children:
        child = children.add(
            ChildServer(
                "sleeper",
                [sys.executable, "-c", script],
                port=1,
                health_path="/",
                env=dict(os.environ),
                log_path=tmp_path / "log",
            )
        )
        child.start()
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started its grandchild"
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
    assert child.process is not None and child.process.poll() is not None
    assert not _alive(grandchild)


def test_settle_waits_while_a_childs_grandchild_burns_cpu_and_not_once_it_sleeps(tmp_path: Path) -> None:
    """Like vLLM's engine process after a load: a grandchild spins for ~1.5 s, then sleeps."""
    flag = tmp_path / "spinning"
    spinner = tmp_path / "spinner.py"
    spinner.write_text(f"import time\nopen({str(flag)!r}, 'w').close()\nend = time.monotonic() + 1.5\n"
                       "while time.monotonic() < end:\n    pass\ntime.sleep(60)\n")  # fmt: skip
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(spinner)!r}]); time.sleep(60)"
    with ProcessSet() as children:
        child = children.add(ChildServer("spinner", [sys.executable, "-c", script], port=1, health_path="/",
                                         env=dict(os.environ), log_path=tmp_path / "log"))  # fmt: skip
        child.start()
        deadline = time.monotonic() + 20
        while not flag.exists():
            assert time.monotonic() < deadline, "the grandchild never started spinning"
            time.sleep(0.01)
        waited = children.settle(timeout_s=10.0)
        assert 0.7 < waited < 5.0  # the spin's rest, counted in the child's process group
        assert children.settle(timeout_s=10.0) < 0.6  # asleep: one window
    assert children.settle() < 0.6  # no children left


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, waiting for a reaper that this container may not have) is not."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in {"Z", "X"}:
            return False
        time.sleep(0.05)
    return True


def test_ratios_report_missing_operands_with_the_reason() -> None:
    scenarios = {
        "http_32x1": {"items_per_s": 80.0},
        "in_process_32x1": {"items_per_s": 100.0},
        "vllm_classify_32x1": {"status": "not run (--no-vllm given)"},
    }
    ratios = compute_ratios(scenarios, "32x1", "4x64")
    assert ratios["http_32x1 / in_process_32x1"] == 0.8
    assert (
        ratios["http_32x1 / vllm_classify_32x1"] == "not run (vllm_classify_32x1: not run (--no-vllm given))"
    )
    assert ratios["http_32x1 / naive_32x1"].startswith("not run (naive_32x1: no result")


def test_serving_openmp_settings_leave_the_operators_and_stay_out_of_vllms_env(monkeypatch) -> None:
    import os

    from service.openmp import OMP_DEFAULTS_MARK, SERVING_OMP_ENV, apply_serving_omp_env, without_serving_omp_env

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the operator's
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv(OMP_DEFAULTS_MARK, raising=False)
    apply_serving_omp_env()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["GOMP_SPINCOUNT"] == SERVING_OMP_ENV["GOMP_SPINCOUNT"]
    child = without_serving_omp_env(dict(os.environ))
    assert child["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in child and OMP_DEFAULTS_MARK not in child
    apply_serving_omp_env()  # a paretorm child of the bench: nothing more added, the mark kept
    assert os.environ[OMP_DEFAULTS_MARK] == "GOMP_SPINCOUNT"


def test_load_generator_checks_every_answer_over_raw_keep_alive_http() -> None:
    """`loadgen` through `rawload.RawClient` against a bare asyncio HTTP server: Content-Length and chunked
    answers are read whole and validated, connections are reused, and a 500's body reaches the error."""
    import asyncio
    import json

    from service.bench.loadgen import Target, closed_loop, open_loop

    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed its connection
                break
            lines = head.lower().split(b"\r\n")
            length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
            items = json.loads(await reader.readexactly(length))["items"]
            if items == ["boom"]:
                body = b"model exploded"
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            elif len(items) % 2:  # odd-sized requests are answered chunked, in two chunks
                body = json.dumps({"results": items}).encode()
                half = len(body) // 2
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                             % (half, body[:half], len(body) - half, body[half:]))  # fmt: skip
            else:
                body = json.dumps({"results": items}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    def validate(answer: dict, expected: int) -> None:
        if len(answer["results"]) != expected:
            raise ValueError(f"{len(answer['results'])} results for {expected} items")

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        target = Target("echo", url, "/score", lambda units: {"items": list(units)}, len, validate)
        async with server:
            done = await closed_loop(target, [f"item {i}" for i in range(40)], concurrency=4, per_request=2)
            assert (done.items, done.requests, done.errors) == (40, 20, 0)
            chunked = await closed_loop(target, [f"item {i}" for i in range(9)], concurrency=3, per_request=3)
            assert (chunked.items, chunked.errors) == (9, 0)
            failed = await closed_loop(target, ["boom"], concurrency=1, per_request=1)
            assert failed.errors == 1 and "model exploded" in (failed.first_error or "")
            assert connections <= 4 + 3 + 1  # each closed loop reused its connections
            opened = await open_loop(target, ["x"], rate_per_s=200, duration_s=0.2, seed=0)
            assert opened.errors == 0 and opened.items == opened.requests > 0

    asyncio.run(main())


def test_paired_rounds_alternate_and_cancel_a_drifting_host() -> None:
    """The host slows down 10 % per measurement while paretorm is truly 1.2x vLLM: one round's ratio says
    1.2 / 0.9 or 1.2 x 0.9 depending on who went first; the A B B A pairs of rounds say 1.2."""
    from service.bench.loadgen import Target
    from service.bench.paired import Pairing, Side, paired_ratios

    def target(name: str) -> Target:
        return Target(name, "http://127.0.0.1:1", "/x", lambda units: {}, len, lambda answer, n: None)

    ours, theirs = Side(target("paretorm"), list, 32, 1), Side(target("vllm"), list, 32, 1)
    calls: list[str] = []

    def measure(side: Side) -> float:
        calls.append(side.target.name)
        speed = 0.9 ** (len(calls) - 1)  # the host's drift
        return (60.0 if side is ours else 50.0) * speed

    result = paired_ratios([Pairing("ours / theirs", ours, theirs)], rounds=6, measure=measure)["ours / theirs"]
    assert calls == ["paretorm", "vllm", "vllm", "paretorm"] * 3  # the order alternates round by round
    assert result["median"] == pytest.approx(1.2, rel=1e-3)
    assert result["min"] == pytest.approx(1.2 * 0.9, rel=1e-3) and result["max"] == pytest.approx(1.2 / 0.9, rel=1e-3)
    assert len(result["ours_items_per_s"]) == len(result["theirs_items_per_s"]) == 6


def test_a_pinned_attention_kernel_reaches_every_paretorm_child(tmp_path: Path) -> None:
    """`paretorm bench --attention-kernel K`: the servers start with it; `auto` leaves their probes to choose."""
    from service.bench.cli import build_parser, config_from
    from service.bench.servers import paretorm_server

    cfg = config_from(build_parser().parse_args(["--quick", "--attention-kernel", "sdpa"]))
    assert cfg.attention_kernel == "sdpa"
    for share in (True, False):
        pinned = paretorm_server(tmp_path, "float32", share_prompts=share, logs=tmp_path, cache_dir=tmp_path,
                                 attention_kernel=cfg.attention_kernel)  # fmt: skip
        flag = pinned.command.index("--attention-kernel")
        assert pinned.command[flag + 1] == "sdpa"
    probed = paretorm_server(tmp_path, "float32", share_prompts=True, logs=tmp_path, cache_dir=tmp_path)
    assert "--attention-kernel" not in probed.command
    assert config_from(build_parser().parse_args(["--quick"])).attention_kernel == "auto"
