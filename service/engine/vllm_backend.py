"""The vLLM backend: vLLM's pooling runner computes the backbone states, our heads do the rest.

vLLM cannot run ArmoRM's gating itself (vllm-project/vllm#11306, #14208) and refuses the head tensors, so
the backbone goes to vLLM as a plain Llama checkpoint holding only the `model.*` tensors (written once per
revision into the cache directory), loaded with `runner="pooling", convert="embed"` and no activation: its
pooled states are final hidden states after the last norm. `vllm_states` decides which prompts get each
conversation's reward state (last token) and gate state (gate token) out of vLLM: one `token_embed` prompt
per conversation when the engine runs in this process, two LAST-pooled prompts otherwise. Either way vLLM's
prefix cache computes a GRPO group's shared prompt once. The heads, the gating network and the debiasing
transform then run in torch, fp32, exactly as in the transformers backend.

Devices: vLLM owns the backbone, so only the heads go to `--device`. The checkpoint is loaded on the host
(`load_device`), the backbone is exported from there and then released (its parameters moved to `meta`)
before vLLM starts: the accelerator never holds a second copy of the backbone, and the host copy is gone
once vLLM has its own. vLLM's states (on the host) are moved to the heads' device before the heads run.

What it buys: continuous batching, prefix caching and tensor parallelism (`tensor_parallel_size`) for
reward models larger than one GPU. What it costs: a second copy of the backbone weights on disk, bf16
noise against the fp32 reference (measured: score within 6.6e-7 fp32 / 4e-3 bf16 on CPU), and vLLM's
start-up time. `block_size=32` keeps the prefix cache fine-grained (128-token blocks recompute ~30% more
tokens on chat traffic).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from service import orphan_guard
from service.cpu_budget import vllm_cpu_binding
from service.engine.outputs import pack_output, rows_from_stacked
from service.engine.types import Batch, EncodedConversation, ScoreRows
from service.engine.vllm_states import AllStates, LastStates, StateLayout

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def export_backbone(loaded: Any, out_root: Path) -> Path:
    """Write (once per revision) a plain Llama checkpoint of the backbone that vLLM can load.

    Replicas sharing a cache volume may export the same revision at once: each writes its own temporary
    directory and renames it into place (atomic); the first rename wins and the others drop their copy
    and use it. A fixed temporary name let one replica delete another's half-written export.
    """
    out_dir = out_root / f"vllm-backbone-{loaded.revision}"
    if (out_dir / "model.safetensors").exists():
        return out_dir
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.partial-", dir=out_root))
    try:
        _write_backbone(loaded, tmp)
        try:
            tmp.rename(out_dir)
        except OSError:
            if not (out_dir / "model.safetensors").exists():
                raise
            logger.info("another process exported %s first; using its copy", out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_backbone(loaded: Any, tmp: Path) -> None:
    backbone = loaded.model.model
    state = {f"model.{name}": tensor.detach().contiguous().cpu() for name, tensor in backbone.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = backbone.config.to_dict()
    config["architectures"] = ["LlamaForCausalLM"]
    config["tie_word_embeddings"] = False
    for key in ("auto_map", "num_objectives", "objective_names", "gating_token_pattern"):
        config.pop(key, None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    for name in _TOKENIZER_FILES:
        source = Path(loaded.path) / name
        if source.exists():
            shutil.copy(source, tmp / name)


def engine_options(settings: Any) -> dict[str, Any]:
    """The `vllm.LLM` arguments the service's settings decide (the pooler config is added by the caller)."""
    return {
        "runner": "pooling",
        "convert": "embed",
        "block_size": 32,
        "dtype": settings.dtype,
        "enforce_eager": settings.device == "cpu" and not settings.compile_wanted,  # CPU: inductor graphs
        "enable_prefix_caching": True,
        "max_model_len": settings.max_input_tokens,
        "max_num_batched_tokens": max(settings.max_batch_tokens, settings.max_input_tokens),
        "tensor_parallel_size": settings.tensor_parallel_size,
        "seed": 0,
    }


def load_device(settings: Any) -> str:
    """Where the checkpoint is loaded: the host when vLLM will own the backbone, else `settings.device`."""
    return "cpu" if settings.backend == "vllm" else settings.device


def release_backbone(model: Any, heads_device: str) -> Any:
    """Free the backbone's weights (moved to `meta`) and put only the heads on `heads_device`.

    Called after the export, before vLLM starts: from then on vLLM's copy is the only backbone. The module
    tree stays (its config, dtype and structure are still read), holding no memory anywhere.
    """
    model.model.to("meta")
    for name, child in model.named_children():
        if name != "model":
            child.to(heads_device)
    for name, parameter in model.named_parameters(recurse=False):
        setattr(model, name, torch.nn.Parameter(parameter.detach().to(heads_device), requires_grad=False))
    return model


def bind_vllm_threads(setting: int | None, env: MutableMapping[str, str] = os.environ) -> str:
    """Set `VLLM_CPU_OMP_THREADS_BIND` in `env` to --torch-threads' or the CPU quota's worth of cores, unless
    the operator set it; returns the binding and why, for the start-up log (the transformers backend logs
    its `torch threads` the same way)."""
    preset = env.get("VLLM_CPU_OMP_THREADS_BIND")
    if preset is not None:
        return f"{preset} (set in the environment)"
    bind = vllm_cpu_binding(setting)
    if bind is None:
        return "auto (vLLM's own choice: neither --torch-threads nor a CPU quota caps the threads)"
    env["VLLM_CPU_OMP_THREADS_BIND"] = bind
    return f"{bind} (--torch-threads or the cgroup CPU quota)"


class VllmBackend:
    name = "vllm"
    packed = False  # vLLM schedules its own tokens; the planner keeps the padded budget

    def __init__(self, llm: Any, heads_model: Any, layout: StateLayout, *, device: str = "cpu") -> None:
        self._llm = llm
        self._heads = heads_model
        self._layout = layout
        self._device = torch.device(device)  # the heads' device: vLLM's states are moved here

    @classmethod
    def from_loaded(cls, loaded: Any, settings: Any, **llm_options: Any) -> VllmBackend:
        if loaded.kind != "armorm":
            raise ValueError(
                "the vllm backend serves ArmoRM-layout checkpoints; serve sequence-classification reward "
                "models with --backend transformers"
            )
        if settings.device == "cpu":
            # In-process engine (the service is already its own process) and a 1 GiB KV cache, unless the
            # operator set these; see environment.md §4 for what vllm-cpu needs.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            logger.info("vLLM CPU threads bound to: %s", bind_vllm_threads(settings.torch_threads))
        from vllm import LLM, PoolingParams, envs
        from vllm.config import PoolerConfig

        in_process = not envs.VLLM_ENABLE_V1_MULTIPROCESSING and settings.tensor_parallel_size == 1
        layout = AllStates(PoolingParams(skip_reading_prefix_cache=False)) if in_process else LastStates()
        backbone_dir = export_backbone(loaded, Path(settings.cache_dir))
        release_backbone(loaded.model, settings.device)
        options = {**engine_options(settings), "pooler_config": PoolerConfig(**layout.pooler), **llm_options}
        # vLLM's engine processes (none when it runs in this one) die with this process, however it dies
        llm, _ = orphan_guard.start_guarded(lambda: LLM(model=str(backbone_dir), **options))
        return cls(llm, loaded.model, layout, device=settings.device)

    @torch.inference_mode()
    def run(self, batch: Batch | Sequence[EncodedConversation]) -> ScoreRows:
        conversations = batch.conversations if isinstance(batch, Batch) else batch
        states = self._layout.states(self._llm, conversations)
        return self.score_states(states.rewards, states.gates, states.computed_tokens)

    def score_states(
        self, rewards: Sequence[torch.Tensor], gates: Sequence[torch.Tensor], computed: int
    ) -> ScoreRows:
        """Run the heads on vLLM's reward and gate states (host tensors, (H,) each) on the heads' device."""
        reward_hidden = torch.stack(list(rewards)).to(self._device, torch.float32)  # (B, H)
        gate_hidden = torch.stack(list(gates)).to(self._device, torch.float32)  # (B, H)
        return rows_from_stacked(pack_output(self._heads.heads(reward_hidden, gate_hidden)), computed)
