"""Contrastive pre-training objective of CLeBS, paper Eq. (1).

For a batch of K aligned pairs (X_k, beta_k) drawn from ONE clip (so every
frame shares the appearance and only expression can tell them apart):

    s_jk  = cos(f_I(X_j), f_e(beta_k)) / tau
    L_cl  = mean_k [ -log( exp(s_kk) / sum_{j != k} exp(s_jk) ) ]
          = mean_k [ -s_kk + logsumexp_{j != k} s_jk ]

The denominator runs over j != k exactly as written in the paper (unlike
InfoNCE it excludes the positive), so the loss is not bounded below by 0: once
positives beat negatives, shrinking tau lowers it without limit, and tau runs to
its lower clamp. ``objective="infonce"`` puts the positive in the denominator
(symmetric InfoNCE, as CLIP trains), a cross-entropy bounded below by 0 whose
temperature settles where the data put it.
Temperature: a learnable log tau, initialised at tau = 0.1 and clamped to
[0.01, 1] to keep the logits well conditioned.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def clebs_contrastive_loss(image_embeddings: Tensor, expression_embeddings: Tensor, tau: float | Tensor) -> Tensor:
    """Eq. (1). Shapes: image_embeddings f_I(X) [K, d], expression_embeddings f_e(beta) [K, d], K >= 2."""
    k = image_embeddings.shape[0]
    if k < 2 or expression_embeddings.shape[0] != k:
        raise ValueError(f"need K >= 2 matching pairs, got {k} and {expression_embeddings.shape[0]}")
    images = F.normalize(image_embeddings, dim=-1)
    expressions = F.normalize(expression_embeddings, dim=-1)
    logits = images @ expressions.T / tau  # [K(j), K(k)]: s_jk
    positives = torch.diagonal(logits)
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=logits.device)
    negatives = logits.masked_fill(~off_diagonal, float("-inf"))
    return (torch.logsumexp(negatives, dim=0) - positives).mean()


def infonce_contrastive_loss(image_embeddings: Tensor, expression_embeddings: Tensor, tau: float | Tensor) -> Tensor:
    """Symmetric InfoNCE: cross-entropy of each β against all frames and each frame against all β, positives
    included. Shapes: image_embeddings [K, d], expression_embeddings [K, d], K >= 2."""
    k = image_embeddings.shape[0]
    if k < 2 or expression_embeddings.shape[0] != k:
        raise ValueError(f"need K >= 2 matching pairs, got {k} and {expression_embeddings.shape[0]}")
    logits = F.normalize(image_embeddings, dim=-1) @ F.normalize(expression_embeddings, dim=-1).T / tau
    target = torch.arange(k, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


OBJECTIVES = {"paper": clebs_contrastive_loss, "infonce": infonce_contrastive_loss}


class CLeBSContrastiveLoss(nn.Module):
    """Eq. (1) (or InfoNCE) with a learnable temperature."""

    def __init__(
        self, initial_tau: float = 0.1, min_tau: float = 0.01, max_tau: float = 1.0, objective: str = "paper"
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
        self.objective = OBJECTIVES[objective]
        self.log_tau = nn.Parameter(torch.tensor(math.log(initial_tau)))
        self.min_log_tau, self.max_log_tau = math.log(min_tau), math.log(max_tau)

    @property
    def tau(self) -> Tensor:
        return self.log_tau.clamp(self.min_log_tau, self.max_log_tau).exp()

    def forward(self, image_embeddings: Tensor, expression_embeddings: Tensor) -> Tensor:
        return self.objective(image_embeddings, expression_embeddings, self.tau)
