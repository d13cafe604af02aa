"""`--backend vllm` device plumbing, without vLLM and without an accelerator (issue 15).

vLLM owns the backbone, so: the checkpoint loads on the host, the backbone is released after the export
(no second copy anywhere), only the heads go to `--device`, and vLLM's host states are moved to the heads'
device. `meta` stands in for an accelerator: a tensor that reached it did not stay on the host.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from service.engine.types import EncodedConversation
from service.engine.vllm_backend import (
    VllmBackend,
    bind_vllm_threads,
    export_backbone,
    load_device,
    release_backbone,
)
from service.engine.vllm_states import AllStates
from service.model import load_reward_model
from service.settings import ServiceSettings
from tests.support.fake_vllm import READING_CACHE, FakePoolingLLM, RecordingHeads


def test_only_the_transformers_backend_loads_the_checkpoint_on_the_device() -> None:
    assert load_device(ServiceSettings(backend="vllm", device="cuda")) == "cpu"
    assert load_device(ServiceSettings(backend="transformers", device="cuda")) == "cuda"
    assert load_device(ServiceSettings()) == "cpu"


def test_after_the_export_the_backbone_holds_no_memory_and_only_the_heads_move(
    tiny_armorm_dir: Path, tmp_path: Path
) -> None:
    loaded = load_reward_model(tiny_armorm_dir)
    heads_before = {name: p.clone() for name, p in loaded.model.named_parameters() if not name.startswith("model.")}
    exported = export_backbone(loaded, tmp_path)  # still readable from the host copy
    release_backbone(loaded.model, "meta")
    assert all(p.is_meta for p in loaded.model.model.parameters())  # no second backbone copy anywhere
    assert all(b.is_meta for b in loaded.model.model.buffers())
    heads = {name: p for name, p in loaded.model.named_parameters() if not name.startswith("model.")}
    assert set(heads) == set(heads_before) and all(p.is_meta for p in heads.values())
    assert all(p.dtype == torch.float32 for p in heads.values())
    assert (exported / "model.safetensors").exists()


def test_heads_released_to_the_host_keep_their_values(tiny_armorm_dir: Path) -> None:
    loaded = load_reward_model(tiny_armorm_dir)
    before = {name: p.clone() for name, p in loaded.model.named_parameters() if not name.startswith("model.")}
    release_backbone(loaded.model, "cpu")
    real = {name: p for name, p in loaded.model.named_parameters() if not p.is_meta}
    assert set(real) == set(before)  # the heads are the only real tensors left
    for name, parameter in real.items():
        torch.testing.assert_close(parameter, before[name], rtol=0, atol=0)


def test_vllm_host_states_reach_the_heads_on_their_device() -> None:
    heads, llm = RecordingHeads(), FakePoolingLLM()
    backend = VllmBackend(llm, heads, AllStates(READING_CACHE), device="meta")
    batch = [EncodedConversation((5, 6, 7, 8), gate_index=1, prefix_len=2),
             EncodedConversation((5, 6, 9), gate_index=1, prefix_len=2)]
    rows = backend.run(batch)
    assert heads.devices and all(device.type == "meta" for device in heads.devices)
    assert llm.calls == [[(5, 6, 7, 8), (5, 6, 9)]]
    np.testing.assert_array_equal(rows.score, [0.0, 1.0])
    assert rows.computed_tokens == 4 + 1  # the second prompt's first block came from the prefix cache


def test_vllm_threads_follow_the_setting_unless_the_operator_bound_them() -> None:
    first_core = str(min(os.sched_getaffinity(0)))
    env: dict[str, str] = {}
    assert bind_vllm_threads(1, env) == f"{first_core} (--torch-threads or the cgroup CPU quota)"
    assert env == {"VLLM_CPU_OMP_THREADS_BIND": first_core}
    operators = {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    assert bind_vllm_threads(1, operators) == "0-1 (set in the environment)"  # the operator's binding stands
    assert operators == {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}
