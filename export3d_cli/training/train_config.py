"""Typed training configurations with named presets (CPU-sized ``small-128`` and the paper-scale ``paper-256``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from export3d_cli.errors import UsageError


@dataclass(frozen=True)
class ClebsTrainConfig:
    """Stage 1 (paper §3.1, Eq. 1): f_I and f_e trained contrastively, every batch from one clip."""

    preset: str = "small-128"
    steps: int = 1500
    clip_batch: int = 16  # frames per batch, all from one clip
    lr: float = 1e-3
    initial_tau: float = 0.1
    objective: str = "paper"  # Eq. (1) as written, or "infonce" (positive in the denominator; contrastive_loss.py)
    # The next two default to what runs did before they existed, so such checkpoints resume unchanged.
    centre: str = "images"  # remove the batch (= clip) mean from f_I's embeddings, or from f_I's and f_e's ("both")
    image_input: str = "pixels"  # what f_I sees of a frame: pixels, or the face pipeline's landmarks (image_encoder.py)
    eval_every: int = 250
    eval_clips: int = 32
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_learning_rate(self.lr)
        if self.objective not in ("paper", "infonce"):
            raise UsageError(f"--objective must be paper or infonce, got {self.objective!r}")
        if self.centre not in ("images", "both"):
            raise UsageError(f"--centre must be images or both, got {self.centre!r}")
        if self.image_input not in ("pixels", "landmarks"):
            raise UsageError(f"--image-input must be pixels or landmarks, got {self.image_input!r}")


def check_learning_rate(lr: float) -> None:
    """A finite, non-negative rate: inf or NaN would train to NaN and still "succeed"."""
    if not (math.isfinite(lr) and lr >= 0):
        raise UsageError(f"--lr must be a finite number >= 0, got {lr}")


PAIR_SAMPLINGS = ("uniform", "expression")


@dataclass(frozen=True)
class GeneratorTrainConfig:
    """Stage 2 (paper §3.2-3.3): G, the renderer's decoder and SR trained to reconstruct D from S, β_D, p_D."""

    preset: str = "small-128"
    expression_encoder: str = "clebs"  # "direct": the paper's ablation, β through a plain MLP trained jointly
    steps: int = 3000
    batch_size: int = 8  # global batch (split across processes)
    lr: float = 2e-4
    # The last ``lr_decay_steps`` steps lower the learning rate along a half cosine to ``lr_final_ratio``·lr
    # (0 = constant). Constant-then-anneal rather than a whole-run schedule, so a run can be extended with
    # --steps and annealed only at its end.
    lr_decay_steps: int = 0
    lr_final_ratio: float = 0.02
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    raw_weight: float = 1.0
    ssim_weight: float = 0.5
    density_weight: float = 0.2
    perceptual_weight: float = 0.5  # used only with local backbone weights (--perceptual-weights)
    adversarial_weight: float = 0.0
    # Extra L1 on the mouth, eyes and brows of the target (a mask from its landmarks): at 128² these regions
    # are a few percent of the pixels, so whole-image losses barely notice a wrong expression.
    region_weight: float = 0.0
    ema_decay: float = 0.999
    stochastic_render: bool = True  # EG3D's jittered samples in training; evaluation is always deterministic
    eval_every: int = 500
    checkpoint_every: int = 500
    eval_clips: int = 8
    eval_frames: int = 8
    log_every: int = 10
    seed: int = 0
    # A trained model folder to start from (all of G, renderer, SR and its frozen CLeBS); "" = from scratch.
    init_weights: str = ""
    # "uniform": the driving frame is any measured frame of the source's clip (paper §3.2). "expression": drawn
    # with probability proportional to |β_D − β_S|₁, so pairs whose expressions differ are seen more often.
    pair_sampling: str = "uniform"

    def __post_init__(self) -> None:
        check_learning_rate(self.lr)
        if self.pair_sampling not in PAIR_SAMPLINGS:
            raise UsageError(f"--pair-sampling must be one of {', '.join(PAIR_SAMPLINGS)}, got {self.pair_sampling!r}")
        if self.expression_encoder not in ("clebs", "direct"):
            raise UsageError(f"--expression-encoder must be 'clebs' or 'direct', got {self.expression_encoder!r}")
        if self.batch_size < 1 or self.steps < 0:
            raise UsageError("--batch-size must be at least 1 and --steps at least 0")
        if self.lr_decay_steps < 0 or not 0.0 <= self.lr_final_ratio <= 1.0:
            raise UsageError("--lr-decay-steps must be at least 0 and the final ratio within [0, 1]")

    def lr_scale(self, step: int) -> float:
        """Factor on the base learning rates for the update that takes the model from ``step`` to ``step + 1``."""
        start = self.steps - self.lr_decay_steps
        if self.lr_decay_steps == 0 or step < start:
            return 1.0
        progress = min((step - start + 1) / self.lr_decay_steps, 1.0)
        return self.lr_final_ratio + (1.0 - self.lr_final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


CLEBS_PRESETS = {
    "tiny": ClebsTrainConfig(preset="tiny", steps=200, clip_batch=8, eval_every=100),
    "small-128": ClebsTrainConfig(),
    "paper-256": ClebsTrainConfig(preset="paper-256", steps=20000, clip_batch=32, lr=3e-4, eval_every=1000),
}
GENERATOR_PRESETS = {
    "tiny": GeneratorTrainConfig(preset="tiny", steps=200, batch_size=4, lr=1e-3, eval_every=100),
    "small-128": GeneratorTrainConfig(),
    "paper-256": GeneratorTrainConfig(
        preset="paper-256", steps=200000, batch_size=32, lr=1e-4, eval_every=5000, checkpoint_every=5000
    ),
}


def with_overrides(config: Any, **overrides: Any) -> Any:
    """``config`` with the non-None ``overrides`` applied (command-line options)."""
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


# Settings that only say how far a run goes and how it reports: a checkpoint may be resumed with other values
# (train longer, anneal at the new end, validate more often); every other setting must match.
RESUMABLE_WITH_OTHER = ("steps", "lr_decay_steps", "eval_every", "checkpoint_every", "log_every")


def check_resumable(run_dir: Any, saved: Any, config: Any) -> None:
    """UsageError naming the settings that differ between a checkpoint's config and this run's."""
    differing = [
        field.name
        for field in dataclasses.fields(config)
        if field.name not in RESUMABLE_WITH_OTHER and getattr(saved, field.name) != getattr(config, field.name)
    ]
    if differing:
        raise UsageError(f"{run_dir}: holds a run with other settings ({', '.join(differing)}); use a new run folder")


def config_to_json(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_json(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def preset_names() -> list[str]:
    return sorted(GENERATOR_PRESETS)


def generator_preset(name: str) -> GeneratorTrainConfig:
    if name not in GENERATOR_PRESETS:
        raise UsageError(f"unknown training preset {name!r}; choose one of {', '.join(preset_names())}")
    return GENERATOR_PRESETS[name]


def clebs_preset(name: str) -> ClebsTrainConfig:
    if name not in CLEBS_PRESETS:
        raise UsageError(f"unknown training preset {name!r}; choose one of {', '.join(sorted(CLEBS_PRESETS))}")
    return CLEBS_PRESETS[name]
