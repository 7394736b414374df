"""Hybrid tri-plane generator G (paper §3.2, Eqs. 4 and 6; DESIGN §3.3).

    T_{beta_D}(S) = G(S, beta'_D) + T_EMA  in R^{3 x 32 x R/2 x R/2}

Source path (depends only on S; computed once per source):
    conv stem     [3, R, R] -> [c1, R/2] -> [c2, R/4] -> [h/4, R/8]
    patch merge   [h/4, R/8] -> tokens [R²/2^8, h] on the R/16 grid

Expression path (per driving frame):
    N EAdaLN-ViT blocks on the R/16 tokens
    pixel shuffle x2 + Gaussian low-pass -> R/8, EAdaLN-ViT blocks (spatial reduction)
    pixel shuffle x2 + Gaussian low-pass -> R/4, conv blocks
    pixel shuffle x2 + Gaussian low-pass -> R/2, concat the stem's R/2 features
                                               (identity detail), conv blocks
    conv -> 96 channels = 3 planes x 32

T_EMA is a buffer with the exponential moving average of generated tri-planes;
it is updated in training mode only and added to every output. With
``expression_planes`` the per-texel expression directions Σ z_k D_k are added
too (``expression_planes.py``; not part of T_EMA's average).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from export3d_cli.config import GeneratorConfig
from export3d_cli.layers.conv_block import ResidualConvBlock, downsample_block
from export3d_cli.layers.lowpass import GaussianLowPass
from export3d_cli.layers.patch_merge import OverlapPatchMerge
from export3d_cli.layers.vit_block import EAdaLNViTBlock
from export3d_cli.models.expression_planes import ExpressionPlanes, planes_input


@dataclass
class SourceFeatures:
    """Source-only work of G, reusable for every driving frame.

    Shapes: tokens [B, T, h] on a ``grid`` x ``grid`` token grid; skip [B, c1, R/2, R/2].
    """

    tokens: Tensor
    skip: Tensor
    grid: int

    def expand(self, batch: int) -> SourceFeatures:
        """Broadcast a single source (B = 1) over ``batch`` frames without copying."""
        if self.tokens.shape[0] == batch:
            return self
        if self.tokens.shape[0] != 1:
            raise ValueError(f"cannot broadcast {self.tokens.shape[0]} sources over {batch} frames")
        return SourceFeatures(
            tokens=self.tokens.expand(batch, -1, -1), skip=self.skip.expand(batch, -1, -1, -1), grid=self.grid
        )


class PixelShuffleUp(nn.Module):
    """1x1 conv to 4 x C_out, pixel shuffle x2, fixed Gaussian low-pass: [B, C_in, H, W] -> [B, C_out, 2H, 2W]."""

    def __init__(self, in_channels: int, out_channels: int, lowpass_size: int, lowpass_sigma: float) -> None:
        super().__init__()
        self.expand = nn.Conv2d(in_channels, 4 * out_channels, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.lowpass = GaussianLowPass(out_channels, lowpass_size, lowpass_sigma)

    def forward(self, x: Tensor) -> Tensor:
        return self.lowpass(self.shuffle(self.expand(x)))


def _tokens_to_grid(tokens: Tensor, size: int) -> Tensor:
    """[B, T, C] -> [B, C, size, size]."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, size, size)


class TriplaneGenerator(nn.Module):
    def __init__(
        self, config: GeneratorConfig, resolution: int, embed_dim: int, basis_size: int = 0, expression_dim: int = 52
    ) -> None:
        super().__init__()
        self.config = config
        self.resolution = resolution
        c1, c2 = config.stem_channels
        h = config.width
        u8, u4, u2 = config.upsample_channels
        size, sigma = config.lowpass_size, config.lowpass_sigma

        self.stem_in = nn.Conv2d(3, c1 // 2, 3, padding=1)
        self.stem_half = downsample_block(c1 // 2, c1)  # R/2
        self.stem_quarter = downsample_block(c1, c2)  # R/4
        self.stem_eighth = downsample_block(c2, h // 4)  # R/8
        self.patch_merge = OverlapPatchMerge(h // 4, h)  # R/16 tokens

        self.blocks = nn.ModuleList(
            EAdaLNViTBlock(h, config.heads, embed_dim, config.mlp_ratio) for _ in range(config.depth)
        )
        self.token_norm = nn.LayerNorm(h)
        self.up8 = PixelShuffleUp(h, u8, size, sigma)
        self.blocks8 = nn.ModuleList(
            EAdaLNViTBlock(
                u8, config.upsample_vit_heads, embed_dim, config.mlp_ratio, config.upsample_spatial_reduction
            )
            for _ in range(config.upsample_vit_blocks)
        )
        self.up4 = PixelShuffleUp(u8, u4, size, sigma)
        self.convs4 = nn.Sequential(*(ResidualConvBlock(u4, u4) for _ in range(config.upsample_conv_blocks)))
        self.up2 = PixelShuffleUp(u4, u2, size, sigma)
        self.convs2 = nn.Sequential(
            *(ResidualConvBlock(u2 + c1 if i == 0 else u2, u2) for i in range(config.upsample_conv_blocks))
        )
        self.to_triplane = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(u2, 3 * config.triplane_channels, 3, padding=1))

        plane = resolution // 2
        self.register_buffer("triplane_ema", torch.zeros(1, 3, config.triplane_channels, plane, plane))
        self.expression_planes = (
            ExpressionPlanes(
                expression_dim if config.expression_planes_coordinates == "blendshapes" else embed_dim,
                basis_size,
                (3, config.triplane_channels, plane, plane),
                reads=config.expression_planes_coordinates,
            )
            if config.expression_planes
            else None
        )

    def encode_source(self, source: Tensor) -> SourceFeatures:
        """Shapes: source [B, 3, R, R] in [-1, 1] -> SourceFeatures."""
        if source.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"source must be {self.resolution}x{self.resolution}, got {tuple(source.shape[-2:])}")
        half = self.stem_half(self.stem_in(source))  # [B, c1, R/2, R/2]
        eighth = self.stem_eighth(self.stem_quarter(half))  # [B, h/4, R/8, R/8]
        tokens, grid, _ = self.patch_merge(eighth)  # [B, R²/2^8, h]
        return SourceFeatures(tokens=tokens, skip=half, grid=grid)

    def generate(self, source: SourceFeatures, expression: Tensor, blendshapes: Tensor | None = None) -> Tensor:
        """Shapes: expression beta' [B, d] -> tri-plane [B, 3, 32, R/2, R/2] (T_EMA included).

        ``blendshapes`` beta [B, E], the input of beta', is needed by expression tri-planes whose coordinates are
        the principal components of beta (``expression_planes_coordinates="blendshapes"``)."""
        source = source.expand(expression.shape[0])
        x, g = source.tokens, source.grid
        for block in self.blocks:
            x = block(x, expression, g, g)  # [B, T, h]
        x = self.up8(_tokens_to_grid(self.token_norm(x), g))  # [B, u8, R/8, R/8]
        g8 = 2 * g
        x = x.flatten(2).transpose(1, 2)  # [B, (R/8)², u8]
        for block in self.blocks8:
            x = block(x, expression, g8, g8)
        x = self.convs4(self.up4(_tokens_to_grid(x, g8)))  # [B, u4, R/4, R/4]
        x = self.up2(x)  # [B, u2, R/2, R/2]
        x = self.convs2(torch.cat([x, source.skip], dim=1))
        planes = self.to_triplane(x)  # [B, 96, R/2, R/2]
        planes = planes.reshape(planes.shape[0], 3, self.config.triplane_channels, *planes.shape[-2:])
        if self.training:
            self._update_triplane_ema(planes)
        planes = planes + self.triplane_ema
        if self.expression_planes is not None:
            planes = planes + self.expression_planes(
                planes_input(self.expression_planes.reads, expression, blendshapes)
            )
        return planes

    @torch.no_grad()
    def _update_triplane_ema(self, planes: Tensor) -> None:
        m = self.config.ema_momentum
        mean = planes.detach().mean(dim=0, keepdim=True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under DDP every process averages the global batch, exactly as one process with the whole batch would.
            torch.distributed.all_reduce(mean)
            mean /= torch.distributed.get_world_size()
        self.triplane_ema.mul_(m).add_(mean, alpha=1 - m)

    def forward(self, source: Tensor, expression: Tensor, blendshapes: Tensor | None = None) -> Tensor:
        """G(S, beta'): shapes source [B, 3, R, R], expression [B, d] -> [B, 3, 32, R/2, R/2]."""
        return self.generate(self.encode_source(source), expression, blendshapes)
