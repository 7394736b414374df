"""Expression encoder f_e: CLeBS (paper §3.1, Eqs. 2-3) and the "Direct 3DMM" ablation.

CLeBS (Contrastive Learned Basis Scaling):

    lambda = MLP(beta) in R^n
    V      = Q of the QR decomposition of a learned W in R^{d x n}   (Eq. 2: <v_i, v_j> = delta_ij)
    beta'  = V lambda = lambda_1 v_1 + ... + lambda_n v_n in R^d    (Eq. 3)

V is recomputed from W in every forward so gradients reach W. The sign of
each column is fixed so that diag(R) > 0: the QR factor is then unique and a
smooth function of W, and ``sweep-basis`` directions do not flip between runs.

With ``standardize`` (every preset), G receives the coefficients standardised over the training frames:

    beta' = V z,   z = (lambda - mean) / std

The contrastive loss of Eq. (1) compares cosines, so it fixes only the direction of f_e(beta); the learned lambda
came out of order 0.1, and beta' varied by ~0.005 per component between expressions, so EAdaLN's zero-initialised
modulation moved ~100x slower on its expression-dependent part than on its bias. Standardised, that part regrows
in 500 steps what took 13,500 (docs/expression-control-diagnosis.md; it did not by itself make the output follow
the driver). The statistics are
buffers set once from the training set when stage 2 starts (CLeBS is frozen then), so they travel with the
weights. |beta'| = |z| ~ sqrt(n): per component ~40x the old variation, yet small enough that a generator
warm-started from unstandardised weights is not thrown off by Adam's first full-size steps on the modulation
weights (with a further sqrt(d / n) gain, unit RMS per component, such a warm start's loss was 0.37 instead
of 0.28 after 20 steps).

The ablation encoder maps beta to R^d with a plain MLP (no basis).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export3d_cli.config import ExpressionEncoderConfig


def _mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class CLeBS(nn.Module):
    """beta [B, E] -> beta' [B, d] through n learned orthonormal directions."""

    def __init__(self, config: ExpressionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.coefficients = _mlp(config.expression_dim, config.hidden_dim, config.hidden_layers, config.basis_size)
        self.weight = nn.Parameter(torch.randn(config.embed_dim, config.basis_size) / config.embed_dim**0.5)
        if config.standardize:
            self.register_buffer("coefficient_mean", torch.zeros(config.basis_size))
            self.register_buffer("coefficient_std", torch.ones(config.basis_size))
            self.register_buffer("coefficient_frames", torch.zeros((), dtype=torch.long))  # 0: not measured yet

    @property
    def needs_statistics(self) -> bool:
        """True for a standardising encoder whose coefficient statistics were never measured."""
        return self.config.standardize and int(self.coefficient_frames) == 0

    @torch.no_grad()
    def set_statistics(self, expressions: Tensor) -> None:
        """Measure mean and std of λ over ``expressions`` β [N, E] (N >= 2): the frames G will be trained on."""
        if not self.config.standardize:
            raise ValueError("this CLeBS does not standardise its coefficients")
        if expressions.shape[0] < 2:
            raise ValueError(f"need at least 2 frames to measure coefficient statistics, got {expressions.shape[0]}")
        coefficients = self.coefficients_of(expressions.to(self.weight))
        self.coefficient_mean.copy_(coefficients.mean(dim=0))
        # The floor keeps a coefficient that never varies from being blown up to noise.
        self.coefficient_std.copy_(coefficients.std(dim=0).clamp_min(1e-4))
        self.coefficient_frames.fill_(expressions.shape[0])

    def standardized(self, coefficients: Tensor) -> Tensor:
        """z = (λ − mean) / std [B, n] (λ itself without ``standardize``)."""
        if not self.config.standardize:
            return coefficients
        return (coefficients - self.coefficient_mean) / self.coefficient_std

    def basis(self) -> Tensor:
        """V [d, n] with orthonormal columns (V^T V = I)."""
        q, r = torch.linalg.qr(self.weight.float(), mode="reduced")
        signs = torch.sign(torch.diagonal(r))
        signs = torch.where(signs == 0, torch.ones_like(signs), signs)
        return (q * signs).to(self.weight.dtype)

    def coefficients_of(self, expression: Tensor) -> Tensor:
        """lambda [B, n] for beta [B, E]."""
        return self.coefficients(expression)

    @torch.no_grad()
    def coefficient_span(self) -> tuple[Tensor, Tensor]:
        """(low [n], high [n]): the range each λ_i takes over the neutral face (β = 0) and the 52 single-blendshape
        extremes (one blendshape at 1, the rest 0): a data-free stand-in for "the values faces produce".

        The paper's Fig. 9 scales λ from 1 to 10; learned coefficients here are of order 0.1, so a fixed range
        sweeps far outside anything the generator was trained on. Sweeping within this span stays on faces.
        """
        dim = self.config.expression_dim
        weight = self.weight
        probes = torch.cat([torch.zeros(1, dim), torch.eye(dim)]).to(device=weight.device, dtype=weight.dtype)
        coefficients = self.coefficients_of(probes)  # [1 + E, n]
        return coefficients.min(dim=0).values, coefficients.max(dim=0).values

    def from_coefficients(self, coefficients: Tensor) -> Tensor:
        """beta' = V lambda (V z with ``standardize``). Shapes: [B, n] -> [B, d]."""
        return self.standardized(coefficients) @ self.basis().T

    def forward(self, expression: Tensor) -> Tensor:
        """Shapes: beta [B, E] -> beta' [B, d]."""
        return self.from_coefficients(self.coefficients_of(expression))


class DirectExpressionEncoder(nn.Module):
    """Ablation "Direct 3DMM" (paper Tab. 3): beta [B, E] -> [B, d] through a plain MLP."""

    def __init__(self, config: ExpressionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _mlp(config.expression_dim, config.hidden_dim, config.hidden_layers, config.embed_dim)

    def forward(self, expression: Tensor) -> Tensor:
        return self.net(expression)


def build_expression_encoder(config: ExpressionEncoderConfig) -> CLeBS | DirectExpressionEncoder:
    return CLeBS(config) if config.kind == "clebs" else DirectExpressionEncoder(config)
