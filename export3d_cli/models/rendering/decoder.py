"""Tri-plane feature decoder: the lightweight MLP of paper Eq. (8), EG3D's OSGDecoder.

    h     = softplus(W0 f + b0)                       f = mean tri-plane feature (32)
    o     = W1 h + b1                                 33 outputs
    sigma = o[0]                                      raw density logit
    c     = sigmoid(o[1:33]) * (1 + 2*0.001) - 0.001  32 features, first 3 = raw RGB

The weights are plain ``nn.Linear`` holding EG3D's *effective* parameters
(W = Wraw / sqrt(in_features) for its equalised-LR layers), so an EG3D
checkpoint loads after that rescaling. The view direction is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEATURE_PAD = 0.001


@dataclass
class DecodedSamples:
    """Decoder outputs per sample point. sigma [N, P, 1] (raw logit), features [N, P, C]."""

    sigma: Tensor
    features: Tensor


class TriplaneDecoder(nn.Module):
    """MLP 32 -> 64 (softplus) -> 1 + 32. ``fc1`` row 0 is the density."""

    def __init__(self, feature_dim: int = 32, hidden_dim: int = 64) -> None:
        super().__init__()
        self.fc0 = nn.Linear(feature_dim, hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, 1 + feature_dim)
        self.activation = nn.Softplus()  # beta 1, threshold 20, as the reference
        # EG3D's initialisation in effective terms: W ~ N(0, 1/in_features), b = 0.
        for layer in (self.fc0, self.fc1):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> DecodedSamples:
        """Shapes: features [N, P, C] (mean over planes) -> sigma [N, P, 1], features [N, P, C]."""
        n, p, c = features.shape
        return self.from_projected(F.linear(features.reshape(n * p, c), self.fc0.weight).reshape(n, p, -1))

    def from_projected(self, projected: Tensor) -> DecodedSamples:
        """The same from W0 f [N, P, H] (f already through fc0's weights, not its bias: ``TriplaneLookup``'s
        ``projection``). Shapes: -> sigma [N, P, 1], features [N, P, C]."""
        n, p, h = projected.shape
        hidden = self.activation(projected.reshape(n * p, h) + self.fc0.bias)
        out = self.fc1(hidden).reshape(n, p, -1)
        color = torch.sigmoid(out[..., 1:]) * (1 + 2 * FEATURE_PAD) - FEATURE_PAD
        return DecodedSamples(sigma=out[..., :1], features=color)
