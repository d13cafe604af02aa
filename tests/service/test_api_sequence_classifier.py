"""A plain multi-label sequence-classification reward model behind the same API."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import torch

from tests.support.service_process import ServiceProcess


def test_sequence_classifier_serves_named_objectives_and_mean_score(tiny_seqcls_dir: Path, tmp_path: Path) -> None:
    from service.model import load_reward_model

    loaded = load_reward_model(tiny_seqcls_dir)
    messages = [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hello, friend."}]
    ids = loaded.tokenizer(loaded.tokenizer.apply_chat_template(messages, tokenize=False),
                           add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = loaded.model.classifier(ids).logits[0].numpy()
    with ServiceProcess(tiny_seqcls_dir, log_path=tmp_path / "serve.log") as service:
        info = httpx.get(service.url + "/v1/model", timeout=30).json()
        body = httpx.post(service.url + "/v1/score", timeout=30, json={
            "items": [{"messages": messages}], "weights": {info["objectives"][1]: 2.0}}).json()
    assert info["kind"] == "sequence-classification"
    assert info["forward"].startswith("padded (sequence classifiers")
    assert info["objectives"] == [loaded.model.config.id2label[i] for i in range(3)]
    result = body["results"][0]
    np.testing.assert_allclose(result["rewards"], logits, atol=1e-5)
    np.testing.assert_allclose(result["gating"], [1 / 3] * 3, atol=1e-7)
    assert math.isclose(result["score"], float(np.mean(logits)), abs_tol=1e-5)
    assert math.isclose(result["weighted"], 2.0 * float(logits[1]), abs_tol=1e-5)
