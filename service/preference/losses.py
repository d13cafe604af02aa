"""The Bradley–Terry preference loss ``-log sigma(margin)``, written once for every preference learner.

``paretorm fit`` trains the gating network with it on score margins ``s(x, y_w) - s(x, y_l)``; DPO,
MODPO and MAPL in ``paretorm train`` use it on implicit-reward margins ``beta (h_w - h_l)``. MAPL's
intra-sample objective is the same loss on pairs that share the response and differ in the prompt
(response-conditioned Bradley–Terry, algorithms.md §7.2); `preference_loss_with_intra` is the
``L_pairs + lambda * L_intra`` combination both the fitter and the MAPL trainer minimise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def preference_loss(margins: torch.Tensor) -> torch.Tensor:
    """``-log sigma(margin)`` averaged over pairs, as ``softplus(-margin)`` (stable for large margins). [N] -> []."""
    return F.softplus(-margins).mean()


def preference_loss_with_intra(
    margins: torch.Tensor, intra_margins: torch.Tensor | None, intra_weight: float
) -> torch.Tensor:
    """``L(margins) + intra_weight * L(intra_margins)``; the intra term is skipped when absent or empty.

    margins [N] (chosen minus rejected, same prompt); intra_margins [M] (``x_w`` minus ``x_l``, same
    response) -> []. Each term is the mean over its own pairs, so ``intra_weight`` alone sets the balance; an
    empty ``margins`` contributes 0 (a MAPL batch may hold only intra pairs).
    """
    loss = preference_loss(margins) if margins.numel() else margins.sum()  # no pairs: 0, still in the graph
    if intra_margins is not None and intra_margins.numel() and intra_weight:
        loss = loss + intra_weight * preference_loss(intra_margins)
    return loss


def pair_accuracy(margins: torch.Tensor) -> float:
    """Share of pairs ranked the right way (``margin > 0``); NaN for no pairs. [N] -> float."""
    return float((margins > 0).float().mean()) if margins.numel() else float("nan")
