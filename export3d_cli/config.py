"""One typed configuration tree for the whole model, with named presets.

``ModelConfig`` is what ``config.json`` of a saved model holds. Leaf modules
take typed arguments from their own section; nothing passes untyped option
dicts around. Presets (DESIGN §3.6):

- ``paper-256``: the paper's scale (R = 256, ViT width h = 768, 8 EAdaLN-ViT
  blocks, d = 512, n = 10, 48 + 48 ray samples, tri-plane 3 × 32 × 128²).
- ``small-128``: trainable on a CPU (R = 128, tri-plane 64², 24 + 24 samples,
  a narrow ViT).
- ``tiny``: for tests (R = 64).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from export3d_cli.errors import UsageError

PlaneAxes = Literal["orthogonal", "eg3d"]
ExpressionEncoderKind = Literal["clebs", "direct"]


@dataclass(frozen=True)
class ExpressionEncoderConfig:
    """CLeBS f_e (paper §3.1) or the "Direct 3DMM" ablation (a plain MLP)."""

    kind: ExpressionEncoderKind = "clebs"
    expression_dim: int = 52  # E: MediaPipe's 52 blendshape scores
    basis_size: int = 10  # n: number of learned basis vectors
    embed_dim: int = 512  # d: dimension of beta'
    hidden_dim: int = 256
    hidden_layers: int = 2
    # Feed G standardised coefficients (CLeBS.standardized): the contrastive loss only fixes β''s direction, and
    # the learned λ came out ~0.1, so EAdaLN saw inputs varying by ~0.005 and learned to ignore them. False in
    # configs written before (their weights have no statistics); every preset sets True.
    standardize: bool = False


@dataclass(frozen=True)
class ImageEncoderConfig:
    """f_I of Eq. (1): only used during CLeBS pre-training."""

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)


EXPRESSION_PLANE_COORDINATES = ("clebs", "blendshapes")


@dataclass(frozen=True)
class GeneratorConfig:
    """Tri-plane generator G (paper §3.2, DESIGN §3.3)."""

    width: int = 768  # h: token width; the conv stem ends with h/4 channels at R/8
    depth: int = 8  # N: EAdaLN-ViT blocks on the R/16 token grid
    heads: int = 12
    mlp_ratio: float = 4.0
    stem_channels: tuple[int, int] = (64, 128)  # conv stem widths at R/2 and R/4
    # Upsampling path: widths at R/8, R/4, R/2 (pixel shuffle x2 + low-pass before each).
    upsample_channels: tuple[int, int, int] = (384, 192, 96)
    upsample_vit_blocks: int = 2  # EAdaLN-ViT blocks at R/8 (with spatial reduction)
    upsample_vit_heads: int = 6
    upsample_spatial_reduction: int = 2
    upsample_conv_blocks: int = 2  # residual conv blocks at R/4 and at R/2
    lowpass_sigma: float = 1.0  # std (in pixels) of the fixed Gaussian low-pass filter
    lowpass_size: int = 5
    triplane_channels: int = 32
    ema_momentum: float = 0.999  # T_EMA <- m T_EMA + (1 - m) mean(T)
    # Per-texel tri-plane directions added to G's output (models/expression_planes.py), one per coordinate of the
    # expression: the CLeBS coefficients ("clebs") or the principal components of β ("blendshapes").
    expression_planes: bool = False
    expression_planes_coordinates: str = "clebs"


@dataclass(frozen=True)
class RendererConfig:
    """EG3D-convention volume renderer (``../shared/docs/eg3d-conventions.md``)."""

    samples: int = 48
    importance_samples: int = 48
    ray_start: float = 2.25
    ray_end: float = 3.3
    box_warp: float = 1.0
    plane_axes: PlaneAxes = "orthogonal"
    decoder_hidden: int = 64


@dataclass(frozen=True)
class SuperResolutionConfig:
    """Plain conv super-resolution from R/4 to R (two x2 stages)."""

    channels: tuple[int, int] = (128, 64)
    blocks_per_stage: int = 2


@dataclass(frozen=True)
class ModelConfig:
    """The whole Export3D network."""

    resolution: int = 256  # R: output image side
    expression: ExpressionEncoderConfig = field(default_factory=ExpressionEncoderConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    superres: SuperResolutionConfig = field(default_factory=SuperResolutionConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.resolution <= 0 or self.resolution % 16:
            problems.append(f"resolution must be a positive multiple of 16, got {self.resolution}")
        g = self.generator
        if g.width % 4:
            problems.append(f"generator.width must be divisible by 4, got {g.width}")
        if g.width % g.heads:
            problems.append(f"generator.width {g.width} is not divisible by heads {g.heads}")
        if g.upsample_channels[0] % g.upsample_vit_heads:
            problems.append("generator.upsample_channels[0] must be divisible by upsample_vit_heads")
        if g.lowpass_size % 2 == 0:
            problems.append("generator.lowpass_size must be odd")
        e = self.expression
        if e.kind not in ("clebs", "direct"):
            problems.append(f"expression.kind must be 'clebs' or 'direct', got {e.kind!r}")
        if e.kind == "clebs" and not 0 < e.basis_size <= e.embed_dim:
            problems.append("expression.basis_size n must satisfy 0 < n <= embed_dim d")
        if self.generator.expression_planes_coordinates not in EXPRESSION_PLANE_COORDINATES:
            problems.append(
                f"generator.expression_planes_coordinates must be one of {', '.join(EXPRESSION_PLANE_COORDINATES)}, "
                f"got {self.generator.expression_planes_coordinates!r}"
            )
        if self.generator.expression_planes and e.kind != "clebs":
            problems.append("generator.expression_planes needs the CLeBS expression encoder (its basis)")
        r = self.renderer
        if r.plane_axes not in ("orthogonal", "eg3d"):
            problems.append(f"renderer.plane_axes must be 'orthogonal' or 'eg3d', got {r.plane_axes!r}")
        if r.samples < 2 or r.importance_samples < 0:
            problems.append("renderer needs samples >= 2 and importance_samples >= 0")
        if r.importance_samples and r.samples < 4:
            problems.append("importance sampling needs samples >= 4")
        if not 0 < r.ray_start < r.ray_end:
            problems.append("renderer needs 0 < ray_start < ray_end")
        if problems:
            raise UsageError("invalid model config: " + "; ".join(problems))

    @property
    def triplane_resolution(self) -> int:
        """Side of each tri-plane: R/2 (paper Eq. 4)."""
        return self.resolution // 2

    @property
    def render_resolution(self) -> int:
        """Side of the volume-rendered feature image: R/4 (paper §3.3)."""
        return self.resolution // 4

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys are an error (configs load strictly)."""
        return _from_dict(cls, data, "config")


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        section = _SECTION_TYPES.get(cls, {}).get(name)
        if section is not None:
            kwargs[name] = _from_dict(section, value, f"{where}.{name}")
        else:
            kwargs[name] = _checked_value(value, known[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}") from exc


# A config file is untrusted input: every value is checked against its field's type and a size range before
# anything is built from it (a width of 10^6 or a depth of 10^9 would allocate without bound).
MAX_SIZE = 4096  # any count or width
MAX_TUPLE_LENGTH = 8
ZERO_ALLOWED = frozenset({"importance_samples", "upsample_vit_blocks", "hidden_layers"})


def _checked_value(value: Any, spec: Any, where: str) -> Any:
    """``value`` converted to the type of field ``spec``'s default, or a UsageError saying what is wrong."""
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    name = spec.name
    if isinstance(default, (bool, str)):
        if type(value) is not type(default):
            raise UsageError(f"{where}: expected {type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, int):
        return _checked_int(value, where, minimum=0 if name in ZERO_ALLOWED else 1)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{where}: expected a finite number, got {value!r}")
        low_ok = value >= 0 if name == "ema_momentum" else value > 0
        if not low_ok or (name == "ema_momentum" and value >= 1):
            bounds = "in [0, 1)" if name == "ema_momentum" else "> 0"
            raise UsageError(f"{where}: must be {bounds}, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        fixed = spec.type != "tuple[int, ...]"
        if (
            not isinstance(value, (list, tuple))
            or not 1 <= len(value) <= MAX_TUPLE_LENGTH
            or (fixed and len(value) != len(default))
        ):
            count = len(default) if fixed else f"1 to {MAX_TUPLE_LENGTH}"
            raise UsageError(f"{where}: expected a list of {count} integers, got {value!r}")
        return tuple(_checked_int(item, where, minimum=1) for item in value)
    return value


def _checked_int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_SIZE:
        raise UsageError(f"{where}: expected an integer from {minimum} to {MAX_SIZE}, got {value!r}")
    return value


_SECTION_TYPES: dict[type, dict[str, type]] = {
    ModelConfig: {
        "expression": ExpressionEncoderConfig,
        "image_encoder": ImageEncoderConfig,
        "generator": GeneratorConfig,
        "renderer": RendererConfig,
        "superres": SuperResolutionConfig,
    }
}


PRESETS: dict[str, ModelConfig] = {
    "paper-256": ModelConfig(expression=ExpressionEncoderConfig(standardize=True)),
    "small-128": ModelConfig(
        resolution=128,
        expression=ExpressionEncoderConfig(embed_dim=256, hidden_dim=128, standardize=True),
        image_encoder=ImageEncoderConfig(channels=(24, 48, 96, 192)),
        generator=GeneratorConfig(
            width=256,
            depth=4,
            heads=4,
            stem_channels=(32, 48),
            upsample_channels=(128, 64, 48),
            upsample_vit_blocks=1,
            upsample_vit_heads=4,
            upsample_conv_blocks=1,
        ),
        renderer=RendererConfig(samples=24, importance_samples=24),
        superres=SuperResolutionConfig(channels=(64, 32), blocks_per_stage=1),
    ),
    "tiny": ModelConfig(
        resolution=64,
        expression=ExpressionEncoderConfig(basis_size=4, embed_dim=32, hidden_dim=32, standardize=True),
        image_encoder=ImageEncoderConfig(channels=(8, 16, 32)),
        generator=GeneratorConfig(
            width=64,
            depth=2,
            heads=2,
            stem_channels=(8, 16),
            upsample_channels=(32, 16, 16),
            upsample_vit_blocks=1,
            upsample_vit_heads=2,
            upsample_conv_blocks=1,
            lowpass_size=3,
        ),
        renderer=RendererConfig(samples=8, importance_samples=8),
        superres=SuperResolutionConfig(channels=(16, 8), blocks_per_stage=1),
    ),
}


def preset(name: str) -> ModelConfig:
    """The named preset, or a UsageError listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
