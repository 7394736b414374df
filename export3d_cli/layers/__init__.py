"""Building blocks of the tri-plane generator (paper §3.2)."""

from export3d_cli.layers.attention import SelfAttention
from export3d_cli.layers.conv_block import ResidualConvBlock, downsample_block
from export3d_cli.layers.eadaln import EAdaLN, ExpressionModulation, modulate
from export3d_cli.layers.lowpass import GaussianLowPass, gaussian_kernel1d
from export3d_cli.layers.mix_ffn import MixFFN
from export3d_cli.layers.patch_merge import OverlapPatchMerge
from export3d_cli.layers.vit_block import EAdaLNViTBlock

__all__ = [
    "EAdaLN",
    "EAdaLNViTBlock",
    "ExpressionModulation",
    "GaussianLowPass",
    "MixFFN",
    "OverlapPatchMerge",
    "ResidualConvBlock",
    "SelfAttention",
    "downsample_block",
    "gaussian_kernel1d",
    "modulate",
]
