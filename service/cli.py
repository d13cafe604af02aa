"""`paretorm` console script. Subcommands import their heavy modules lazily, so `--help` is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# flag name -> ServiceSettings field; flags left out keep the PARETORM_* environment or the default.
_SERVE_FLAGS: dict[str, dict[str, object]] = {
    "model": {"help": "checkpoint directory (ArmoRM layout or sequence classifier); default: embedded model"},
    "default_model": {"choices": ["auto", "smollm2", "tiny-demo"],
                      "help": "the model served when --model is unset (auto: SmolLM2 if installed, else the demo)"},
    "host": {"help": "bind address (default 127.0.0.1)"},
    "port": {"type": int, "help": "port (default 8000)"},
    "dtype": {"choices": ["auto", "float32", "bfloat16", "float16"],
              "help": "backbone dtype (default float32; auto: bfloat16 where measured faster here)"},
    "device": {"help": "torch device: cpu, cuda, cuda:N (default cpu)"},
    "backend": {"choices": ["transformers", "vllm"], "help": "backbone engine (default transformers)"},
    "tensor_parallel_size": {"type": int, "help": "GPUs the vllm backend splits the backbone over (default 1)"},
    "cache_dir": {"help": "where the embedded default model is built and cached"},
    "max_input_tokens": {"type": int, "help": "most tokens per conversation"},
    "truncation": {"choices": ["error", "left"], "help": "over the limit: 413, or cut the prompt from the left"},
    "max_items_per_request": {"type": int, "help": "most conversations per request"},
    "max_body_bytes": {"type": int, "help": "largest request body"},
    "max_batch_tokens": {"type": int, "help": "most tokens per forward pass (real when packed, padded "
                         "otherwise); see --tune-batch-tokens"},
    "max_batch_items": {"type": int, "help": "conversations per forward pass"},
    "max_queue_tokens": {"type": int, "help": "tokens allowed to wait; beyond: 429"},
    "max_concurrent_requests": {"type": int, "help": "scoring requests handled at once; beyond: 429 before the "
                                "body is read (default 512, or 4 x max batch items if more)"},
    "torch_threads": {"type": int, "help": "torch threads for the forwards (default: OMP_NUM_THREADS, else "
                      "one per core capped by the container's CPU quota)"},
    "batch_wait_ms": {"type": float, "help": "how long to wait for more requests to batch"},
    "compile_forward": {"choices": ["auto", "on", "off"],
                        "help": "torch.compile the packed forward at start-up (auto: on CPUs, eager if it fails)"},
    "attention_kernel": {"choices": ["auto", "sdpa", "matmul", "paged"],
                         "help": "the packed forward's attention kernel (auto: measured at start-up)"},
    "prefix_cache_mb": {"type": float, "help": "memory for prompt states kept across batches (0 = off)"},
    "result_cache_items": {"type": int, "help": "scores kept for exact repeats of an input (0 = off)"},
    "api_keys": {"help": "comma-separated API keys; visible in `ps`: prefer PARETORM_API_KEYS or --api-keys-file"},
    "api_keys_file": {"help": "file of API keys, one per line (PARETORM_API_KEYS_FILE; e.g. a mounted secret)"},
    "drain_timeout_s": {"type": float, "help": "on SIGTERM, how long to finish accepted work"},
    "judge_timeout_s": {"type": float, "help": "most time one /v1/judge request may spend judging (default 5)"},
    "log_level": {"choices": ["debug", "info", "warning", "error"]},
}


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the reward service")
    for name, options in _SERVE_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **options)  # type: ignore[arg-type]
    parser.add_argument("--allow-pickle", dest="allow_pickle", action="store_true", default=None,
                        help="allow pickle .bin weights (unsafe: only for checkpoints you trust)")
    parser.add_argument("--no-share-prompts", dest="share_prompts", action="store_false", default=None,
                        help="compute every conversation's prompt separately")
    parser.add_argument("--no-packed", dest="packed", action="store_false", default=None,
                        help="use transformers' padded forward instead of the packed one")
    parser.add_argument("--tune-batch-tokens", dest="tune_batch_tokens",
                        action=argparse.BooleanOptionalAction, default=None,
                        help="measure the forward budget at start-up (default on; off: plan at "
                        "--max-batch-tokens)")
    parser.add_argument("--thread-tuning", dest="thread_tuning", action=argparse.BooleanOptionalAction,
                        default=None, help="on CPUs, run each forward on N or N-1 torch threads, whichever "
                        "measured faster lately (default off)")
    parser.add_argument("--engine-process", dest="engine_process", action=argparse.BooleanOptionalAction,
                        default=None, help="run the model in a child process with its own interpreter lock")
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from service.malloc import tune_malloc
    from service.openmp import apply_serving_omp_env

    apply_serving_omp_env()
    tune_malloc()  # before the model loads: its buffers then stay mapped between forwards
    from pydantic import ValidationError

    from service.settings import ServiceSettings

    overrides = {key: value for key, value in vars(args).items() if key not in {"run", "command"} and value is not None}
    try:
        settings = ServiceSettings(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]) or "settings"
            print(f"paretorm serve: {field}: {problem['msg']}", file=sys.stderr)
        return 2
    from service.server import serve  # torch, transformers, FastAPI: only once the settings are valid

    return serve(settings)


def _run_fit(rest: list[str]) -> int:
    from service.fitting.cli import add_fit_arguments, run_fit

    parser = argparse.ArgumentParser(prog="paretorm fit", description="Fit ArmoRM heads on a backbone.")
    add_fit_arguments(parser)
    return int(run_fit(parser.parse_args(rest)) or 0)


def _run_augment(rest: list[str]) -> int:
    from service.objectives.mapl_cli import main as augment_main

    return int(augment_main(rest) or 0)


def _run_bench(rest: list[str]) -> int:
    from service.openmp import apply_serving_omp_env

    apply_serving_omp_env()  # the in-process rows run with the server's OpenMP settings, like for like
    from service.bench.cli import main as bench_main

    return int(bench_main(rest) or 0)


def _run_train(rest: list[str]) -> int:
    from service.training.cli import main as train_main

    return int(train_main(rest) or 0)


def _run_bench_rollout(rest: list[str]) -> int:
    from service.training.rollout_bench import main as rollout_main

    return int(rollout_main(rest) or 0)


def _run_bench_engine(rest: list[str]) -> int:
    from service.bench.engine_bench import main as engine_main

    return int(engine_main(rest) or 0)


# Subcommands that parse their own flags: `main` hands them the rest of argv untouched.
_PASSTHROUGH = {
    "fit": (_run_fit, "fit ArmoRM heads (stage 1, debiasing, stage 2) on a backbone"),
    "augment": (_run_augment, "MAPL: augment a preference JSONL with instruction pairs"),
    "train": (_run_train, "train a policy on the service's rewards: grpo, pama, dpa"),
    "bench": (_run_bench, "side-by-side throughput benchmark"),
    "bench-rollout": (_run_bench_rollout, "rollout tokens/s: vLLM vs transformers generate on one policy"),
    "bench-engine": (_run_bench_engine, "the scoring backend alone on any device (the GPU check)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretorm", description="Multi-objective reward model serving.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_serve(subparsers)
    for name, (_, help_text) in _PASSTHROUGH.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in _PASSTHROUGH:
        run, _ = _PASSTHROUGH[arguments[0]]
        return run(arguments[1:])
    args = build_parser().parse_args(arguments)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
