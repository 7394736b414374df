"""The model side of inference: load weights once, encode a source once, render frames in batches.

Owns devices, precision and tensors; knows nothing about files. The source-only
work (conv stem, patch-merge tokens) runs once per source (``SourceFeatures``);
every driving frame then costs G's token blocks, the renderer and SR. On CUDA,
bf16/fp16 run under autocast; the CPU path is float32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from export3d_cli.errors import UsageError
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.generator import SourceFeatures

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def choose_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


@dataclass
class EncodedSource:
    features: SourceFeatures
    expression: torch.Tensor  # β_S [1, 52]


class Animator:
    """``Export3D`` in eval mode on a device, rendering uint8 frames."""

    def __init__(self, model: Export3D, device: str = "auto", precision: str = "fp32", batch_size: int = 8) -> None:
        if precision not in PRECISIONS:
            raise UsageError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
        self.device = choose_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise UsageError(f"--precision {precision} needs a GPU (--device cuda); the CPU path is fp32")
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        self.model = model.to(self.device).eval()
        self.dtype = PRECISIONS[precision]
        self.batch_size = batch_size
        self.weights_directory: Path | None = None  # known when loaded by ``from_weights``
        self._base: Export3D | None = None  # the model before ``personalize``

    @functools.cached_property
    def base_sha256(self) -> str:
        """The identity personalised files are keyed by (hashing the weights once per run, not once per photo)."""
        from export3d_cli.personalization.personalized_file import weights_sha256

        if self.weights_directory is None:
            raise UsageError("personalisation needs weights loaded from a folder")
        return weights_sha256(self.weights_directory)

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @classmethod
    def from_weights(cls, weights: str | None, **kwargs: object) -> Animator:
        from export3d_cli.models.weights_io import default_weights, load_default_model, load_model, resolve_weights

        animator = cls(load_model(weights) if weights else load_default_model(), **kwargs)  # type: ignore[arg-type]
        animator.weights_directory = resolve_weights(weights or default_weights())
        return animator

    def prepare_photo(
        self,
        photo: Path,
        *,
        personalized: Path | None = None,
        personalize: bool = True,
        face_index: int = 0,
        on_start: Callable[[int, int, float], None] | None = None,
        on_step: Callable[[int, int, float], None] | None = None,
    ) -> None:
        """Choose the model for ``photo``: its ``personalized`` file if given; else, when the weights' config asks
        for personalisation and ``personalize`` is on, the cached personalisation (made now if missing: ``on_start``
        then ``on_step`` per tuning step); else the base model."""
        from export3d_cli.personalization.cache import cached_personalization, personalization_policy

        if personalized is not None:
            self.personalize(personalized, photo)
            return
        if self._base is not None:
            self.model = self._base
        if not personalize or self.weights_directory is None:
            return
        policy = personalization_policy(self.weights_directory)
        if not policy.needed:
            return
        path = cached_personalization(
            self.model,
            self.weights_directory,
            self.base_sha256,
            Path(photo),
            steps=policy.steps,
            face_index=face_index,
            on_start=on_start,
            on_step=on_step,
        )
        self.personalize(path, photo)

    def personalize(self, personalized: Path, photo: Path) -> None:
        """Render ``photo`` with its personalised model (``export3d personalize``): ``personalized`` is the file or
        the folder ``personalize -o`` wrote. The base model is kept, so the next photo starts from it again."""
        from export3d_cli.personalization.personalized_file import load_personalized_model, personalized_file_for

        base_sha256 = self.base_sha256
        if self._base is None:
            self._base = self.model
        path = personalized_file_for(Path(personalized), Path(photo))
        self.model = load_personalized_model(self._base, base_sha256, path, Path(photo)).to(self.device).eval()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] crop → [1, 3, R, R] in [-1, 1] at the model's resolution (area-resized)."""
        image = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        if image.shape[-1] != self.resolution:
            image = F.interpolate(image, size=(self.resolution, self.resolution), mode="area")
        return image.to(self.device)

    @torch.no_grad()
    def encode(self, crop: np.ndarray, expression: np.ndarray) -> EncodedSource:
        with self._autocast():
            features = self.model.encode_source(self.to_tensor(crop))
        return EncodedSource(features, torch.from_numpy(np.asarray(expression, np.float32))[None].to(self.device))

    @torch.no_grad()
    def render(self, source: EncodedSource, expression: np.ndarray, camera: np.ndarray) -> Iterator[np.ndarray]:
        """Frames uint8 [R, R, 3] for β [T, 52] and p [T, 25], computed ``batch_size`` at a time."""
        for start in range(0, len(expression), self.batch_size):
            beta = torch.from_numpy(np.asarray(expression[start : start + self.batch_size], np.float32))
            labels = torch.from_numpy(np.asarray(camera[start : start + self.batch_size], np.float32))
            beta, labels = beta.to(self.device), labels.to(self.device)
            with self._autocast():
                # A driver's coefficients beyond what G was trained on are clamped (models/expression_range.py).
                embedding = self.model.driving_embedding(beta, source.expression)
                image = self.model.render_embedding(source.features, embedding, labels, beta).image
            yield from _to_uint8(image)

    @torch.no_grad()
    def render_embedding(
        self, source: EncodedSource, embedding: torch.Tensor, camera: np.ndarray, blendshapes: torch.Tensor
    ) -> Iterator[np.ndarray]:
        """Like ``render`` with β' [T, d] given directly (sweep-basis bypasses f_e); ``blendshapes`` β [T, E] for
        expression tri-planes that read β."""
        for start in range(0, len(embedding), self.batch_size):
            chunk = embedding[start : start + self.batch_size].to(self.device)
            beta = blendshapes[start : start + self.batch_size].to(self.device)
            labels = torch.from_numpy(np.asarray(camera[start : start + self.batch_size], np.float32)).to(self.device)
            with self._autocast():
                image = self.model.render_embedding(source.features, chunk, labels, beta).image
            yield from _to_uint8(image)


def _to_uint8(image: torch.Tensor) -> Iterator[np.ndarray]:
    pixels = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    yield from pixels
