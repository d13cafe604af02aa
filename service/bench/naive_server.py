"""The benchmark's floor: a naive reward server that runs one forward per HTTP request.

This is how most reward servers are written (OpenRLHF's `serve_rm` is this shape): a FastAPI endpoint,
a lock around the model, the request's own items padded into one batch, no cross-request batching, no
prompt sharing, no length planning. Same model, same tokenisation and the same `/v1/score` body as the
service, so the bench drives it with the same client code.

Run: `python -m service.bench.naive_server --model DIR --port P --dtype bfloat16`.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI

from clients.protocol import ScoreRequest
from service.model.loading import load_reward_model
from service.scoring.encoding import ChatEncoder, EncodingPolicy, conversation

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def create_naive_app(model_dir: str, dtype: str) -> FastAPI:
    loaded = load_reward_model(model_dir, dtype=_DTYPES[dtype])
    model = loaded.model
    encoder = ChatEncoder(
        loaded.tokenizer, gate_pattern=model.gating_token_pattern, bos_token_id=loaded.tokenizer.bos_token_id
    )
    policy = EncodingPolicy(4096, "error")
    pad_id = int(model.pad_token_id if model.pad_token_id is not None else 0)
    lock = threading.Lock()
    app = FastAPI(title="paretorm-bench naive floor")

    @torch.inference_mode()
    def forward(ids: Sequence[Sequence[int]]) -> Any:
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return model(input_ids, attention_mask=(input_ids != pad_id).long())

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/score")
    def score(body: ScoreRequest) -> dict[str, Any]:  # sync: runs in the threadpool, the lock serialises
        conversations = [conversation(item.prompt, item.response) for item in body.items]  # type: ignore[arg-type]
        encoded = encoder.encode_conversations(
            conversations, policy, labels=[f"items[{i}]" for i in range(len(conversations))]
        )
        with lock:
            out = forward([row.input_ids for row in encoded])
        return {
            "results": [
                {"rewards": r.tolist(), "gating": g.tolist(), "score": float(s)}
                for r, g, s in zip(out.rewards.float(), out.gating.float(), out.score.float(), strict=True)
            ]
        }

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bench.naive_server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="bfloat16")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_naive_app(args.model, args.dtype), host="127.0.0.1", port=args.port, log_level="warning"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
