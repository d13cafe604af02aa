"""The ArmoRM gating network: an MLP on the prompt embedding that mixes the objectives.

Reproduces ``GatingNetwork`` of the ArmoRM model card (armorm.md §1.1) with the same parameter names
(``layers.{i}.weight/bias``, ``logit_scale``) so the published state dict loads unchanged.

* ``temperature`` is a plain float, read from config (``gating_temperature``), not a tensor: the
  reference keeps it out of the state dict, so a checkpoint cannot carry it.
* ``logit_scale`` is a trained parameter of shape ``(1,)``; the output sums to it, not to 1.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatingNetwork"]


class GatingNetwork(nn.Module):
    """``n_hidden`` ReLU layers of width ``hidden_dim``, a plain linear layer, then a tempered softmax."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        temperature: float = 10.0,
        logit_scale: float = 1.0,
        hidden_dim: int = 1024,
        n_hidden: int = 3,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"gating temperature must be > 0, got {temperature}; check gating_temperature")
        self.temperature = float(temperature)
        self.logit_scale = nn.Parameter(torch.ones(1) * logit_scale)
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(n_hidden):
            layers.append(nn.Linear(width, hidden_dim))  # the reference always uses a bias here
            width = hidden_dim
        layers.append(nn.Linear(width, out_features, bias=bias))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map prompt embeddings ``(B, H)`` to non-negative weights ``(B, K)`` summing to ``logit_scale``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        # dim=-1 on a (B, K) input is the reference's dim=1.
        return torch.softmax(x / self.temperature, dim=-1) * self.logit_scale[0]
