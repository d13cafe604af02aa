"""What the service says about the model it serves (`GET /v1/model`), built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from clients.protocol import Limits, ModelInfo
from service.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str
    revision: str
    kind: str
    objectives: tuple[str, ...]
    dtype: str
    device: str
    backend: str
    is_demo: bool
    description: str | None
    limits: Limits

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            revision=self.revision,
            kind=self.kind,
            objectives=list(self.objectives),
            dtype=self.dtype,
            device=self.device,
            backend=self.backend,
            is_demo=self.is_demo,
            description=self.description,
            limits=self.limits,
        )


def limits_from(settings: ServiceSettings) -> Limits:
    return Limits(
        max_input_tokens=settings.max_input_tokens,
        max_items_per_request=settings.max_items_per_request,
        max_body_bytes=settings.max_body_bytes,
        max_batch_tokens=settings.max_batch_tokens,
        max_queue_tokens=settings.max_queue_tokens,
        truncation=settings.truncation,
    )
