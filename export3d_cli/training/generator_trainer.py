"""Stage 2 training (paper §3.2-3.3, DESIGN §6): reconstruct a driving frame D from a source frame S.

S and D come from the same clip; the model renders D's view with D's β and
camera p. CLeBS is frozen (loaded from a ``train-clebs`` run); with
``expression_encoder="direct"`` the paper's ablation trains a plain MLP on β
jointly instead. The generator's T_EMA buffer is updated in training mode, an
EMA of all weights is kept for evaluation and export, and the renderer samples
stochastically in training (deterministically in evaluation).

A run directory holds ``checkpoint/`` (resumable state), ``model/`` (the EMA
weights, loadable with ``--weights``), ``log.jsonl`` and ``samples/`` (image
grids: source | target | output per row).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export3d_cli.config import ModelConfig, preset
from export3d_cli.errors import Interrupted, UsageError
from export3d_cli.metrics.image_quality import ssim
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.expression_range import measure_expression_range
from export3d_cli.training.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from export3d_cli.training.clebs_trainer import load_expression_encoder
from export3d_cli.training.dataset import ClipDataset, PairBatch, sample_pairs
from export3d_cli.training.distributed import ProcessGroup, all_reduce_mean
from export3d_cli.training.evaluation import evaluate_model
from export3d_cli.training.interrupts import deferred_interrupt
from export3d_cli.training.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    density_smoothness,
    discriminator_loss,
    expression_region_l1,
    generator_adversarial_loss,
)
from export3d_cli.training.train_config import (
    GeneratorTrainConfig,
    check_resumable,
    config_from_json,
    config_to_json,
)

StepCallback = Callable[[int, int, dict[str, float]], None]


def model_config_for(config: GeneratorTrainConfig) -> ModelConfig:
    model_config = preset(config.preset)
    if config.expression_encoder == "direct":
        model_config = dataclasses.replace(
            model_config, expression=dataclasses.replace(model_config.expression, kind="direct")
        )
    return model_config


@dataclass
class TrainingState:
    """Everything that changes while training (what a checkpoint holds)."""

    model: Export3D
    ema: Export3D
    optimizer: torch.optim.Optimizer
    discriminator: PatchDiscriminator | None
    discriminator_optimizer: torch.optim.Optimizer | None
    rng: np.random.Generator
    step: int = 0
    unstandardized_init: bool = False  # --init weights from before CLeBS standardised its coefficients
    # --init weights whose own CLeBS --clebs replaced: their encoder, until the modulations are folded for the new one
    replaced_encoder: nn.Module | None = None

    def modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"model": self.model, "ema": self.ema}
        if self.discriminator is not None:
            modules["discriminator"] = self.discriminator
        return modules

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"generator": self.optimizer}
        if self.discriminator_optimizer is not None:
            optimizers["discriminator"] = self.discriminator_optimizer
        return optimizers


def build_state(config: GeneratorTrainConfig, clebs_run: Path | None, device: torch.device) -> TrainingState:
    torch.manual_seed(config.seed)
    model_config = model_config_for(config)
    if config.init_weights:
        model_config = _with_expression_planes_of(model_config, config.init_weights)
    model = Export3D(model_config).to(device)
    unstandardized_init = False
    replaced_encoder = None
    if config.init_weights:
        unstandardized_init = _load_initial_weights(model, config.init_weights)
        if clebs_run is not None:
            # A new CLeBS under a warm-started generator (e.g. one that separates expressions better): the
            # generator's modulations are folded for it when training starts (``measure_expression_statistics``)
            # and then learn the new β' from zero, the rest of the generator from where it was.
            replaced_encoder = copy.deepcopy(model.expression_encoder).requires_grad_(False)
            load_expression_encoder(model.expression_encoder, clebs_run)
    elif config.expression_encoder == "clebs":
        if clebs_run is None:
            raise UsageError("--clebs RUN is required (or use --expression-encoder direct for the ablation)")
        load_expression_encoder(model.expression_encoder, clebs_run)
    if config.expression_encoder == "clebs":
        model.expression_encoder.requires_grad_(False)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.Adam(_parameter_groups(model), lr=config.lr, betas=config.betas)
    discriminator = discriminator_optimizer = None
    if config.adversarial_weight > 0:
        discriminator = PatchDiscriminator().to(device)
        discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(0.0, 0.99))
    rng = np.random.default_rng([config.seed, 5])
    return TrainingState(
        model,
        ema,
        optimizer,
        discriminator,
        discriminator_optimizer,
        rng,
        unstandardized_init=unstandardized_init,
        replaced_encoder=replaced_encoder,
    )


# The expression tri-planes are per-texel values, like a tri-plane optimised directly: at G's learning rate (2e-4)
# they would take ~50x the steps that tools/fit_expression_planes.py needs at 1e-2. Their group's rate is scaled.
EXPRESSION_PLANES_LR_FACTOR = 50.0


def _parameter_groups(model: Export3D) -> list[dict]:
    """Adam's groups: every trainable parameter at the run's rate, the expression tri-planes (if any) at
    ``EXPRESSION_PLANES_LR_FACTOR`` times it (``lr_factor``, kept in checkpoints with the group)."""
    planes, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (planes if name.startswith("generator.expression_planes.") else rest).append(parameter)
    groups = [{"params": rest, "lr_factor": 1.0}]
    if planes:
        groups.append({"params": planes, "lr_factor": EXPRESSION_PLANES_LR_FACTOR})
    return groups


def _with_expression_planes_of(model_config: ModelConfig, reference: str) -> ModelConfig:
    """``model_config`` with expression tri-planes if the ``--init`` weights have them (they are not a preset
    setting: ``tools/fit_expression_planes.py`` adds them to trained weights)."""
    from export3d_cli.models.weights_io import read_config, resolve_weights

    initial = read_config(resolve_weights(reference)).generator
    if not initial.expression_planes:
        return model_config
    return dataclasses.replace(
        model_config,
        generator=dataclasses.replace(
            model_config.generator,
            expression_planes=True,
            expression_planes_coordinates=initial.expression_planes_coordinates,
        ),
    )


def _load_initial_weights(model: Export3D, reference: str) -> bool:
    """Start from a trained model (``--init``): its config must be the one this run trains, or that config from
    before CLeBS standardised its coefficients (then True: the trainer adapts the weights to the new scale)."""
    from export3d_cli.models.weights_io import load_model

    initial = load_model(reference)
    if _unstandardized_version(model.config) == initial.config:
        _load_unstandardized(model, initial)
        return True
    if initial.config != model.config:
        raise UsageError(
            f"--init {reference}: its model config differs from this run's (preset and --expression-encoder must match)"
        )
    model.load_state_dict(initial.state_dict(), strict=True)
    return False


def _unstandardized_version(config: ModelConfig) -> ModelConfig | None:
    """``config`` as written before CLeBS standardised its coefficients (None if it does not standardise)."""
    if config.expression.kind != "clebs" or not config.expression.standardize:
        return None
    return dataclasses.replace(config, expression=dataclasses.replace(config.expression, standardize=False))


def _load_unstandardized(model: Export3D, initial: Export3D) -> None:
    """Weights trained on unstandardised β' (e.g. the first bundled model) into a standardising model.

    Everything loads except the coefficient statistics, which are measured when training starts; the trainer
    then rewrites the EAdaLN modulations for the new input scale (``fold_expression_modulation``).
    """
    missing, unexpected = model.load_state_dict(initial.state_dict(), strict=False)
    statistics = {
        f"expression_encoder.{name}" for name in ("coefficient_mean", "coefficient_std", "coefficient_frames")
    }
    if set(missing) != statistics or unexpected:
        raise UsageError(f"--init: weights do not fit this model (missing {missing}, unexpected {unexpected})")


@torch.no_grad()
def fold_expression_modulation(model: Export3D, old_embedding: Tensor) -> None:
    """Rewrite each EAdaLN modulation ``W·SiLU(β') + b`` for a β' other than the one W was fitted to.

    ``old_embedding`` [N, d] is β' of the training frames as the weights saw it: unstandardised (~100x smaller than
    standardised, where W mostly contributed a constant — the expression-dependent part varied by ~0.02), or from
    the CLeBS that ``--clebs`` replaced (the new coefficients mean something else). The constant ``W·mean(SiLU(β'))``
    moves into the bias and W is zeroed, so the model starts as the expression-independent function it had learnt
    and the expression path starts from zero, as at initialisation.
    """
    from export3d_cli.layers.eadaln import ExpressionModulation

    mean_input = F.silu(old_embedding).mean(dim=0)  # [d]
    for module in model.generator.modules():
        if isinstance(module, ExpressionModulation):
            linear = module.proj[1]
            linear.bias.add_(linear.weight @ mean_input)
            linear.weight.zero_()


@torch.no_grad()
def measure_expression_statistics(state: TrainingState, dataset: ClipDataset, clips: list) -> int:
    """Set a standardising CLeBS's coefficient statistics from the training frames (once per run); frames used
    (0 when there was nothing to do). Runs before a checkpoint is resumed, which then brings its own state.

    After ``--init`` from unstandardised weights, or with ``--clebs`` replacing the ``--init`` weights' CLeBS, the
    EAdaLN modulations are folded for the new β' too; expression tri-planes fitted to a replaced CLeBS's
    coefficients mean nothing under the new one and restart from zero (refit them: tools/fit_expression_planes.py),
    while those on β's principal components are kept as they are.
    """
    needs_statistics = getattr(state.model.expression_encoder, "needs_statistics", False)
    if not needs_statistics and state.replaced_encoder is None:
        return 0
    frames = torch.from_numpy(dataset.measured_expressions(clips)).float()
    for model in (state.model, state.ema):
        planes = model.generator.expression_planes
        if planes is not None and planes.reads == "blendshapes":
            planes = None  # their coordinates come from β, not from the encoder: nothing to redo
        encoder = model.expression_encoder
        if state.replaced_encoder is not None:
            fold_expression_modulation(model, state.replaced_encoder(frames))
            if planes is not None:
                planes.directions.zero_()
                planes.basis.zero_()  # never fitted: the coordinates are set afresh below
            z_before = None
        else:
            # The expression tri-planes' z must not change with β′'s new scale: the same frames, seen through the
            # standardised β′, give it new coordinates (their own mean and spread absorb the change).
            z_before = None if planes is None else planes.coordinates(encoder(frames))
            if state.unstandardized_init:
                fold_expression_modulation(model, encoder.coefficients_of(frames) @ encoder.basis().T)
        if needs_statistics:
            encoder.set_statistics(frames)
        if planes is not None:
            refit_expression_plane_coordinates(model, frames, z_before)
    state.replaced_encoder = None
    return frames.shape[0]


@torch.no_grad()
def measure_training_expression_range(state: TrainingState, dataset: ClipDataset, clips: list) -> None:
    """Record the training frames' coefficient range on the model and its EMA (saved with the weights, applied by
    inference to drivers: models/expression_range.py). Measured at every start: the frames are the data's."""
    encoder = state.model.expression_encoder
    if not hasattr(encoder, "coefficients_of"):
        return
    frames = torch.from_numpy(dataset.measured_expressions(clips)).float()
    if frames.shape[0] < 2:
        return
    expression_range = measure_expression_range(encoder, frames)
    for model in (state.model, state.ema):
        model.expression_range = expression_range


@torch.no_grad()
def refit_expression_plane_coordinates(model: Export3D, expressions: Tensor, z_before: Tensor | None) -> None:
    """Give the expression tri-planes coordinates under the encoder's current β′ that reproduce ``z_before`` [N, n]
    on the frames ``expressions`` [N, E]: a per-coefficient affine map, fitted by least squares. Planes never fitted
    (zero basis; ``z_before`` may then be None) are standardised afresh."""
    planes = model.generator.expression_planes
    basis = model.expression_encoder.basis()
    raw = model.expression_encoder(expressions) @ basis  # [N, n]
    if not planes.basis.any():
        # Planes that were never fitted (zero basis: z is 0 for every frame) have nothing to keep: standardise afresh.
        planes.set_coordinates(basis, raw)
        return
    centred_raw, centred_z = raw - raw.mean(dim=0), z_before - z_before.mean(dim=0)
    scale = (centred_raw * centred_z).sum(dim=0) / centred_raw.square().sum(dim=0).clamp_min(1e-12)  # z ≈ a·raw + c
    # A coefficient that no frame moves (a = 0) keeps its constant z: unit scale, offset to the same mean.
    scale = torch.where(scale.abs() < 1e-12, torch.ones_like(scale), scale)
    offset = z_before.mean(dim=0) - scale * raw.mean(dim=0)
    planes.basis.copy_(basis)
    planes.coefficient_std.copy_(1.0 / scale)
    planes.coefficient_mean.copy_(-offset / scale)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def compute_losses(
    model: nn.Module,
    export3d: Export3D,
    batch: PairBatch,
    config: GeneratorTrainConfig,
    perceptual: PerceptualLoss | None,
    discriminator: PatchDiscriminator | None,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Weighted total loss, its terms, and the output image (for the discriminator)."""
    target = batch.driving.images
    output = model(batch.source, batch.driving.expression, batch.driving.camera)
    raw_size = output.image_raw.shape[-1]
    raw_target = F.interpolate(target, size=(raw_size, raw_size), mode="area")
    terms = {
        "l1": (output.image - target).abs().mean(),
        "raw_l1": (output.image_raw - raw_target).abs().mean(),
        "ssim": 1.0 - ssim(output.image, target).mean(),
    }
    if config.region_weight > 0:
        terms["region_l1"] = expression_region_l1(output.image, target, batch.driving.landmarks)
    if config.density_weight > 0:
        renderer = export3d.renderer.config
        terms["density"] = density_smoothness(
            output.triplane, export3d.renderer.decoder, renderer.plane_axes, renderer.box_warp
        )
    if perceptual is not None and config.perceptual_weight > 0:
        terms["perceptual"] = perceptual(output.image, target)
    if discriminator is not None:
        terms["adversarial"] = generator_adversarial_loss(discriminator(output.image))
    weights = {
        "l1": config.l1_weight,
        "raw_l1": config.raw_weight,
        "ssim": config.ssim_weight,
        "density": config.density_weight,
        "region_l1": config.region_weight,
        "perceptual": config.perceptual_weight,
        "adversarial": config.adversarial_weight,
    }
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms, output.image


def _shard(batch: PairBatch, part: slice, device: torch.device) -> PairBatch:
    from export3d_cli.training.dataset import FrameBatch

    driving = batch.driving
    return PairBatch(
        source=batch.source[part].to(device),
        driving=FrameBatch(
            driving.images[part].to(device),
            driving.expression[part].to(device),
            driving.camera[part].to(device),
            driving.landmarks[part].to(device),
        ),
    )


def train_step(
    state: TrainingState,
    model: nn.Module,
    batch: PairBatch,
    config: GeneratorTrainConfig,
    perceptual: PerceptualLoss | None,
) -> dict[str, float]:
    """One optimisation step on this process's shard; returns the (process-averaged) loss terms."""
    export3d = state.model
    lr = config.lr * config.lr_scale(state.step)
    for optimizer in state.optimizers().values():
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)
    state.optimizer.zero_grad(set_to_none=True)
    if state.discriminator is not None:
        state.discriminator.requires_grad_(False)
    total, terms, image = compute_losses(model, export3d, batch, config, perceptual, state.discriminator)
    total.backward()
    trainable = [p for p in export3d.parameters() if p.requires_grad]
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
    state.optimizer.step()
    if state.discriminator is not None and state.discriminator_optimizer is not None:
        state.discriminator.requires_grad_(True)
        state.discriminator_optimizer.zero_grad(set_to_none=True)
        d_loss = discriminator_loss(state.discriminator(batch.driving.images), state.discriminator(image.detach()))
        d_loss.backward()
        state.discriminator_optimizer.step()
        terms["discriminator"] = d_loss
    update_ema(state.ema, export3d, min(config.ema_decay, (1 + state.step) / (10 + state.step)))
    state.step += 1
    logged = {name: float(all_reduce_mean(value.detach())) for name, value in terms.items()}
    logged["loss"] = float(all_reduce_mean(total.detach()))
    logged["lr"] = lr
    return logged


def write_sample_grid(path: Path, model: Export3D, dataset: ClipDataset, clips: list, count: int = 4) -> Path:
    """Rows of source | target | output for the first frames of a few held-out clips."""
    from export3d_cli.media.image_io import save_image

    rows = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for clip in clips[:count]:
            frames = dataset.params(clip.id).num_frames
            pair = dataset.batch(clip.id, [0, frames // 2])
            output = model(
                pair.images[:1].to(device), pair.expression[1:].to(device), pair.camera[1:].to(device)
            ).image.cpu()
            row = torch.cat([pair.images[0], pair.images[1], output[0].clamp(-1, 1)], dim=2)  # [3, R, 3R]
            rows.append(row)
    model.train(was_training)
    grid = torch.cat(rows, dim=1)  # [3, rows*R, 3R]
    pixels = ((grid.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    return save_image(path, pixels)


def _rng_states(rng: np.random.Generator) -> tuple[dict, torch.Tensor, list[torch.Tensor]]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return rng.bit_generator.state, torch.get_rng_state(), cuda


def _restore_rng_states(rng: np.random.Generator, states: tuple[dict, torch.Tensor, list[torch.Tensor]]) -> None:
    numpy_state, torch_state, cuda_states = states
    rng.bit_generator.state = numpy_state
    torch.set_rng_state(torch_state)
    if cuda_states:
        torch.cuda.set_rng_state_all(cuda_states)


class GeneratorTrainer:
    def __init__(
        self,
        dataset: ClipDataset,
        run_dir: Path,
        config: GeneratorTrainConfig,
        group: ProcessGroup,
        clebs_run: Path | None = None,
        perceptual_weights: Path | None = None,
    ) -> None:
        self.dataset = dataset
        self.run_dir = run_dir
        self.config = config
        self.group = group
        self.state = build_state(config, clebs_run, group.device)
        self.perceptual = PerceptualLoss(perceptual_weights).to(group.device) if perceptual_weights else None
        self.train_clips = dataset.clips("train")
        self.test_clips = dataset.clips("test")
        if not self.train_clips:
            raise UsageError(f"{dataset.root}: the dataset has no training clips")
        # Before any checkpoint is resumed (which brings its own statistics) and before the first step.
        measure_expression_statistics(self.state, dataset, self.train_clips)
        measure_training_expression_range(self.state, dataset, self.train_clips)
        if dataset.resolution != self.state.model.config.resolution:
            raise UsageError(f"internal: dataset resolution {dataset.resolution} differs from the model's")
        self.model: nn.Module = self.state.model
        if group.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [group.device.index] if group.device.type == "cuda" else None
            # Buffers (T_EMA) are averaged inside the generator, so every process already holds the same values.
            self.model = DistributedDataParallel(self.state.model, device_ids=device_ids, broadcast_buffers=False)
        if not config.stochastic_render:
            self.state.model.renderer.eval()

    def resume_if_possible(self) -> bool:
        if not has_checkpoint(self.run_dir):
            return False
        state = read_checkpoint_state(self.run_dir)
        saved = config_from_json(GeneratorTrainConfig, state["config"])
        check_resumable(self.run_dir, saved, self.config)
        state = load_checkpoint(
            self.run_dir,
            modules=self.state.modules(),
            optimizers=self.state.optimizers(),
            numpy_rng=self.state.rng,
        )
        self.state.step = int(state["step"])
        return True

    def save(self) -> None:
        if not self.group.is_main:
            return
        save_checkpoint(
            self.run_dir,
            step=self.state.step,
            modules=self.state.modules(),
            optimizers=self.state.optimizers(),
            numpy_rng=self.state.rng,
            extra={"config": config_to_json(self.config), "kind": "generator"},
        )
        self.state.ema.save_pretrained(self.run_dir / "model")

    def validate(self) -> dict:
        metrics = evaluate_model(
            self.state.ema,
            self.dataset,
            max_clips=self.config.eval_clips,
            max_frames=self.config.eval_frames,
            # AED and expression_r need only the face pipeline; the identity judges stay out of training.
            identity_metrics=False,
        )
        if self.test_clips:
            write_sample_grid(
                self.run_dir / "samples" / f"step{self.state.step:07d}.png",
                self.state.ema,
                self.dataset,
                self.test_clips,
            )
        return metrics

    def log(self, record: dict) -> None:
        if self.group.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with (self.run_dir / "log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def train(self, on_step: StepCallback | None = None) -> dict:
        """Run to ``config.steps``; Ctrl-C saves a checkpoint and raises Interrupted."""
        config = self.config
        part = self.group.shard(config.batch_size)
        self._last_logged = (time.perf_counter(), self.state.step)
        last_metrics: dict = {}
        rng_states = _rng_states(self.state.rng)
        try:
            with deferred_interrupt() as stop:
                while self.state.step < config.steps:
                    if stop.requested:
                        raise KeyboardInterrupt
                    rng_states = _rng_states(self.state.rng)
                    self._one_step(part, on_step)
                    rng_states = _rng_states(self.state.rng)  # the step is complete: nothing to rewind after this
                    last_metrics = self._after_step(last_metrics)
        except KeyboardInterrupt:
            # A KeyboardInterrupt raised inside a step (a second Ctrl-C): rewind the RNGs to the step's start so the
            # checkpoint's next batch is the one that was cut short.
            _restore_rng_states(self.state.rng, rng_states)
            self.save()
            raise Interrupted(f"interrupted at step {self.state.step}; checkpoint saved in {self.run_dir}") from None
        self.save()
        if self.group.is_main and not last_metrics and self.test_clips:
            last_metrics = self.validate()
            self.log({"step": self.state.step, "validation": last_metrics})
        return last_metrics

    def _one_step(self, part: slice, on_step: StepCallback | None) -> None:
        config = self.config
        batch = sample_pairs(self.dataset, self.train_clips, config.batch_size, self.state.rng, config.pair_sampling)
        shard = _shard(batch, part, self.group.device)
        terms = train_step(self.state, self.model, shard, config, self.perceptual)
        step = self.state.step
        if step % config.log_every == 0 or step == config.steps:
            now = time.perf_counter()
            terms["steps_per_s"] = (step - self._last_logged[1]) / max(now - self._last_logged[0], 1e-9)
            self._last_logged = (now, step)
            self.log({"step": step, **terms})
        if on_step is not None:
            on_step(step, config.steps, terms)

    def _after_step(self, last_metrics: dict) -> dict:
        config, step = self.config, self.state.step
        if self.group.is_main and config.eval_every and step % config.eval_every == 0:
            last_metrics = self.validate()
            self.log({"step": step, "validation": last_metrics})
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            self.save()
        return last_metrics
