"""What the service says about the model it serves (`GET /v1/model`), built once at start-up.

The card is the wire contract's `ModelInfo` itself: the scorer reads the objectives, revision and limits
from the same object the route returns.
"""

from __future__ import annotations

from typing import Any

from clients.protocol import Limits, ModelInfo
from service.settings import ServiceSettings


def limits_from(settings: ServiceSettings) -> Limits:
    return Limits(
        max_input_tokens=settings.max_input_tokens,
        max_items_per_request=settings.max_items_per_request,
        max_body_bytes=settings.max_body_bytes,
        max_batch_tokens=settings.max_batch_tokens,
        max_queue_tokens=settings.max_queue_tokens,
        truncation=settings.truncation,
    )


def model_card(
    settings: ServiceSettings,
    loaded: Any,
    backend_name: str,
    forward: str | None = None,
    attention: str | None = None,
) -> ModelInfo:
    return ModelInfo(
        name=loaded.name,
        revision=loaded.revision,
        kind=loaded.kind,
        objectives=list(loaded.model.objective_names),
        dtype=settings.dtype,
        device=settings.device,
        backend=backend_name,
        forward=forward,
        attention=attention,
        is_demo=loaded.is_demo,
        description=loaded.description,
        limits=limits_from(settings),
    )
