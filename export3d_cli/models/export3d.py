"""Export3D, the whole network (paper Fig. 1):

    beta'_D = f_e(beta_D)                          CLeBS (or the direct ablation)
    T       = G(S, beta'_D) + T_EMA                tri-plane [3, 32, R/2, R/2]
              (+ sum_k z_k D_k: expression tri-planes, with ``generator.expression_planes``)
              (+ P(beta'_D): a person's own tri-planes, when personalised — ``personalization``)
    F       = render(T, p_D)                       feature image [32, R/4, R/4], F[:3] = raw RGB
    D_hat   = SR(F)                                RGB [3, R, R]

``encode_source`` does the source-only work once; ``render`` then draws any
number of (expression, camera) pairs from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from export3d_cli.config import ModelConfig
from export3d_cli.geometry.camera import split_camera_label
from export3d_cli.models.expression_encoder import build_expression_encoder
from export3d_cli.models.expression_planes import planes_input
from export3d_cli.models.expression_range import ExpressionRange
from export3d_cli.models.generator import SourceFeatures, TriplaneGenerator
from export3d_cli.models.rendering import TriplaneRenderer
from export3d_cli.models.superresolution import SuperResolution


@dataclass
class Export3DOutput:
    """Shapes: image [B, 3, R, R], image_raw [B, 3, R/4, R/4], depth/opacity [B, 1, R/4, R/4],
    triplane [B, 3, 32, R/2, R/2]. Images in [-1, 1] (approximately)."""

    image: Tensor
    image_raw: Tensor
    depth: Tensor
    opacity: Tensor
    triplane: Tensor


class Export3D(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.expression_encoder = build_expression_encoder(config.expression)
        self.generator = TriplaneGenerator(
            config.generator,
            config.resolution,
            config.expression.embed_dim,
            config.expression.basis_size,
            config.expression.expression_dim,
        )
        self.renderer = TriplaneRenderer(config.renderer, config.generator.triplane_channels, config.render_resolution)
        self.superres = SuperResolution(config.superres, config.generator.triplane_channels)
        # Set by ``personalization.personal_triplanes.attach``; not part of the base weights.
        self.personal: nn.Module | None = None
        # The training frames' coefficient range (models/expression_range.py): read from and saved to config.json,
        # applied by inference to driving expressions. None: unknown, nothing is clamped.
        self.expression_range: ExpressionRange | None = None

    def encode_source(self, source: Tensor) -> SourceFeatures:
        """Shapes: source [B, 3, R, R] in [-1, 1] -> cached source features."""
        return self.generator.encode_source(source)

    def render(self, source: SourceFeatures, expression: Tensor, camera: Tensor) -> Export3DOutput:
        """Shapes: expression beta [B, E], camera label [B, 25]; a B = 1 source broadcasts over B frames."""
        if expression.shape[-1] != self.config.expression.expression_dim:
            raise ValueError(
                f"expression must have {self.config.expression.expression_dim} values, got {expression.shape[-1]}"
            )
        return self.render_embedding(source, self.expression_encoder(expression), camera, expression)

    def driving_embedding(self, expression: Tensor, source_expression: Tensor | None = None) -> Tensor:
        """β' [B, d] of driving β [B, E] at inference: f_e(β) with the CLeBS coefficients kept within the training
        frames' range (``expression_range``), widened to include the source's own β [1, E] so the source keeps its
        expression. Without a range (or with the direct encoder) simply f_e(β)."""
        if expression.shape[-1] != self.config.expression.expression_dim:
            raise ValueError(
                f"expression must have {self.config.expression.expression_dim} values, got {expression.shape[-1]}"
            )
        encoder = self.expression_encoder
        if self.expression_range is None or not hasattr(encoder, "coefficients_of"):
            return encoder(expression)
        keep = None if source_expression is None else encoder.coefficients_of(source_expression)
        return encoder.from_coefficients(self.expression_range.clamp(encoder.coefficients_of(expression), keep))

    def render_embedding(
        self, source: SourceFeatures, embedding: Tensor, camera: Tensor, blendshapes: Tensor | None = None
    ) -> Export3DOutput:
        """``render`` from β' = f_e(β) [B, d] directly (e.g. a CLeBS coefficient swept by hand, paper Fig. 9).

        ``blendshapes`` β [B, E]: needed by expression tri-planes on β's principal components (they hold the
        expression β gives them while β' is swept)."""
        planes = self.generator.generate(source, embedding, blendshapes)
        if self.personal is not None:
            planes = planes + self.personal(planes_input(self.personal.reads, embedding, blendshapes))
        return self.render_planes(planes, camera)

    def render_planes(self, planes: Tensor, camera: Tensor) -> Export3DOutput:
        """Volume rendering and SR of given tri-planes [B, 3, C, R/2, R/2] through cameras [B, 25]."""
        cam2world, intrinsics = split_camera_label(camera)
        rendered = self.renderer(planes, cam2world, intrinsics)
        image = self.superres(rendered.features)
        return Export3DOutput(
            image=image,
            image_raw=rendered.features[:, :3],
            depth=rendered.depth,
            opacity=rendered.opacity,
            triplane=planes,
        )

    def forward(self, source: Tensor, expression: Tensor, camera: Tensor) -> Export3DOutput:
        """Shapes: source [B, 3, R, R] in [-1, 1], expression [B, E], camera [B, 25]."""
        return self.render(self.encode_source(source), expression, camera)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (atomically) into ``directory``."""
        from export3d_cli.models.weights_io import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(cls, reference: str | Path) -> Export3D:
        """Load strictly from a local directory or a Hugging Face hub repo id."""
        from export3d_cli.models.weights_io import load_model

        return load_model(reference)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
