"""Stage 1 training (paper §3.1, Eq. 1): contrastive pre-training of CLeBS f_e with an image encoder f_I.

Every batch holds K frames of ONE clip, so positives (X_k, β_k) and negatives
(X_j, β_k), j ≠ k, share the same appearance: the only way to tell them apart is
the expression, which is what makes f_e appearance-free. Reported on held-out
clips: the loss and the retrieval accuracy (for each β_k, is X_k the most similar
frame of its clip?). Only f_e is kept (``RUN/clebs/``); f_I is needed for training
alone (it stays in the checkpoint for resuming).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from export3d_cli.atomic import atomic_path, atomic_write_text
from export3d_cli.config import ExpressionEncoderConfig, preset
from export3d_cli.data.dataset_layout import NUM_LANDMARKS
from export3d_cli.errors import InputError, Interrupted, UsageError
from export3d_cli.models.expression_encoder import build_expression_encoder
from export3d_cli.models.image_encoder import ImageEncoder, LandmarkEncoder
from export3d_cli.training.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from export3d_cli.training.contrastive_loss import CLeBSContrastiveLoss, clebs_contrastive_loss
from export3d_cli.training.dataset import ClipDataset, sample_clip_batch
from export3d_cli.training.interrupts import deferred_interrupt
from export3d_cli.training.train_config import ClebsTrainConfig, check_resumable, config_from_json, config_to_json

CLEBS_DIR = "clebs"
StepCallback = Callable[[int, int, dict[str, float]], None]


def save_expression_encoder(encoder: nn.Module, config: ExpressionEncoderConfig, run_dir: Path) -> Path:
    directory = run_dir / CLEBS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "expression_encoder.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    atomic_write_text(directory / "config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return directory


def load_expression_encoder(encoder: nn.Module, run_dir: Path) -> None:
    """Load a ``train-clebs`` result into ``encoder`` (strict: the configs must match)."""
    directory = Path(run_dir) / CLEBS_DIR
    path = directory / "expression_encoder.safetensors"
    if not path.is_file():
        raise InputError(f"{run_dir}: not a train-clebs run (no {CLEBS_DIR}/expression_encoder.safetensors)")
    try:
        encoder.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(f"{path}: does not match the model's expression encoder ({first})") from error


def centred(embeddings: torch.Tensor) -> torch.Tensor:
    """Embeddings minus their mean over the batch [K, d].

    Every frame of a batch comes from one clip, so the mean of f_I's embeddings is the clip's shared appearance,
    which carries no expression; without removing it, f_I's embeddings of one clip start out nearly parallel
    (cosines ~0.999), Eq. (1) sits at log(K - 1) and barely moves. f_I is a training-only network, so this is part
    of its definition. With ``centre="both"`` f_e's embeddings are centred in the loss too (see ``ClebsTrainConfig``).
    """
    return embeddings - embeddings.mean(dim=0, keepdim=True)


@torch.no_grad()
def clebs_validation(
    image_encoder: nn.Module,
    expression_encoder: nn.Module,
    tau: float,
    dataset: ClipDataset,
    clips: list,
    k: int,
    centre: str = "images",
) -> dict[str, float]:
    """Held-out loss and frame ↔ β retrieval accuracy within each clip (chance = 1/K), the embeddings centred as in
    training (``centre``)."""
    losses, hits, total, chance = [], 0, 0, []
    device = next(image_encoder.parameters()).device
    for clip in clips:
        valid = dataset.valid_indices(clip.id)
        if len(valid) < 2:
            continue
        chance.append(1.0 / min(k, len(valid)))
        chosen = valid[np.linspace(0, len(valid) - 1, min(k, len(valid))).round().astype(int)]
        batch = dataset.batch(clip.id, np.unique(chosen))
        images = F.normalize(centred(image_encoder(getattr(batch, image_encoder.reads).to(device))), dim=-1)
        expressions = expression_encoder(batch.expression.to(device))
        expressions = F.normalize(centred(expressions) if centre == "both" else expressions, dim=-1)
        losses.append(float(clebs_contrastive_loss(images, expressions, tau)))
        similarity = expressions @ images.T  # [K(β), K(X)]
        hits += int((similarity.argmax(dim=1) == torch.arange(len(similarity), device=device)).sum())
        total += len(similarity)
    return {
        "val_loss": float(np.mean(losses)) if losses else float("nan"),
        "val_retrieval": hits / total if total else float("nan"),
        "val_chance": float(np.mean(chance)) if chance else float("nan"),
    }


class ClebsTrainer:
    def __init__(self, dataset: ClipDataset, run_dir: Path, config: ClebsTrainConfig, device: torch.device) -> None:
        self.dataset = dataset
        self.run_dir = run_dir
        self.config = config
        self.device = device
        model_config = preset(config.preset)
        self.encoder_config = model_config.expression
        if self.encoder_config.kind != "clebs":
            raise UsageError("train-clebs trains a CLeBS encoder; the preset's expression encoder is not CLeBS")
        torch.manual_seed(config.seed)
        self.expression_encoder = build_expression_encoder(self.encoder_config).to(device)
        embed_dim = self.encoder_config.embed_dim
        self.image_encoder = (
            LandmarkEncoder(NUM_LANDMARKS, embed_dim)
            if config.image_input == "landmarks"
            else ImageEncoder(model_config.image_encoder, embed_dim)
        ).to(device)
        self.loss = CLeBSContrastiveLoss(config.initial_tau, objective=config.objective).to(device)
        parameters = [*self.expression_encoder.parameters(), *self.image_encoder.parameters(), *self.loss.parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=config.lr)
        self.rng = np.random.default_rng([config.seed, 6])
        self.step = 0
        self.train_clips = dataset.clips("train")
        self.val_clips = dataset.clips("test")[: config.eval_clips]
        if not self.train_clips:
            raise UsageError(f"{dataset.root}: the dataset has no training clips")

    def modules(self) -> dict[str, nn.Module]:
        return {"expression_encoder": self.expression_encoder, "image_encoder": self.image_encoder, "loss": self.loss}

    def resume_if_possible(self) -> bool:
        if not has_checkpoint(self.run_dir):
            return False
        state = read_checkpoint_state(self.run_dir)
        saved = config_from_json(ClebsTrainConfig, state["config"])
        check_resumable(self.run_dir, saved, self.config)
        state = load_checkpoint(
            self.run_dir, modules=self.modules(), optimizers={"clebs": self.optimizer}, numpy_rng=self.rng
        )
        self.step = int(state["step"])
        return True

    def save(self) -> None:
        save_checkpoint(
            self.run_dir,
            step=self.step,
            modules=self.modules(),
            optimizers={"clebs": self.optimizer},
            numpy_rng=self.rng,
            extra={"config": config_to_json(self.config), "kind": "clebs"},
        )
        save_expression_encoder(self.expression_encoder, self.encoder_config, self.run_dir)

    def train_step(self) -> dict[str, float]:
        _, batch = sample_clip_batch(self.dataset, self.train_clips, self.config.clip_batch, self.rng)
        images = centred(self.image_encoder(getattr(batch, self.image_encoder.reads).to(self.device)))
        expressions = self.expression_encoder(batch.expression.to(self.device))
        if self.config.centre == "both":
            expressions = centred(expressions)
        loss = self.loss(images, expressions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach()), "tau": float(self.loss.tau.detach())}

    def validate(self) -> dict[str, float]:
        return clebs_validation(
            self.image_encoder,
            self.expression_encoder,
            float(self.loss.tau.detach()),
            self.dataset,
            self.val_clips,
            self.config.clip_batch,
            self.config.centre,
        )

    def log(self, record: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "log.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def train(self, on_step: StepCallback | None = None) -> dict[str, float]:
        config = self.config
        metrics: dict[str, float] = {}
        started, last = time.perf_counter(), self.step
        rng_state, torch_state = self.rng.bit_generator.state, torch.get_rng_state()
        try:
            with deferred_interrupt() as stop:
                while self.step < config.steps:
                    if stop.requested:
                        raise KeyboardInterrupt
                    rng_state, torch_state = self.rng.bit_generator.state, torch.get_rng_state()
                    terms = self.train_step()
                    rng_state, torch_state = self.rng.bit_generator.state, torch.get_rng_state()
                    if self.step % config.log_every == 0 or self.step == config.steps:
                        terms["steps_per_s"] = (self.step - last) / max(time.perf_counter() - started, 1e-9)
                        started, last = time.perf_counter(), self.step
                        self.log({"step": self.step, **terms})
                    if on_step is not None:
                        on_step(self.step, config.steps, terms)
                    if config.eval_every and self.step % config.eval_every == 0 and self.val_clips:
                        metrics = self.validate()
                        self.log({"step": self.step, "validation": metrics})
                        self.save()
        except KeyboardInterrupt:
            # Interrupted inside a step: rewind the generators so the checkpoint's next batch is the cut one.
            self.rng.bit_generator.state = rng_state
            torch.set_rng_state(torch_state)
            self.save()
            raise Interrupted(f"interrupted at step {self.step}; checkpoint saved in {self.run_dir}") from None
        self.save()
        if self.val_clips:
            metrics = self.validate()
            self.log({"step": self.step, "validation": metrics})
        return metrics
