"""Generic fixtures shared by every test folder: tiny deterministic checkpoints built once per session.

``service.model`` (and so torch) is imported inside the fixtures, never at module level, so tests that
check ``import clients`` leaves torch out of ``sys.modules`` stay meaningful.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Services started by tests (in-process and child processes, which inherit this) skip the start-up
# torch.compile of the packed forward: ~20-40 s per start on 2 cores. The compiled path has its own tests
# (tests/model/test_packed_forward.py, tests/service/test_compile_forward.py), which ask for it explicitly.
os.environ.setdefault("PARETORM_COMPILE_FORWARD", "off")
# Likewise the start-up budget probe (a few seconds of forwards per start); tests that plan batches expect
# the budget they configure. tests/service/test_budget_probe_serve.py turns it on.
os.environ.setdefault("PARETORM_TUNE_BATCH_TOKENS", "off")

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="session")
def tiny_armorm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed-0 tiny ArmoRM checkpoint (6 objectives, single model.safetensors). Treat as read-only."""
    from service.model import build_tiny_armorm

    return build_tiny_armorm(tmp_path_factory.mktemp("tiny-armorm"))


@pytest.fixture(scope="session")
def tiny_seqcls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed-0 tiny LlamaForSequenceClassification reward model with 3 named objectives. Read-only."""
    from service.model import build_tiny_sequence_classifier

    return build_tiny_sequence_classifier(tmp_path_factory.mktemp("tiny-seqcls"), num_labels=3)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny checkpoints' tokenizer (Llama-3 special tokens, ArmoRM chat template, right padding)."""
    from service.model import build_tiny_tokenizer

    return build_tiny_tokenizer()
