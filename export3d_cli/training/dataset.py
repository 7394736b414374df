"""Reading a dataset (DESIGN §5) for training and evaluation: frames as tensors, per-frame β and p.

Frames are decoded on first use and kept per clip as uint8 (a 200-identity
128² synthetic set is ~0.4 GB), so an epoch after the first costs no PNG
decoding. Images are returned in [-1, 1], resized with area averaging when the
model's resolution differs from the dataset's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_cli.data.dataset_layout import (
    ClipParams,
    ClipRecord,
    Manifest,
    read_clip_params,
    read_frame,
    read_manifest,
)
from export3d_cli.errors import InputError


def is_cross_identity(clip: ClipRecord) -> bool:
    return bool(clip.extra.get("cross_identity", False))


@dataclass(frozen=True)
class FrameBatch:
    """Shapes: images [B, 3, R, R] in [-1, 1], expression [B, E], camera [B, 25], landmarks [B, 478, 2]
    (pixels of the R×R images; where the face pipeline or the synthetic mesh put them)."""

    images: Tensor
    expression: Tensor
    camera: Tensor
    landmarks: Tensor


class ClipDataset:
    """One dataset folder: its manifest, per-clip parameters and (cached) frames."""

    def __init__(self, root: str | Path, resolution: int | None = None) -> None:
        self.root = Path(root)
        self.manifest: Manifest = read_manifest(self.root)
        self.resolution = resolution or self.manifest.resolution
        self._params: dict[str, ClipParams] = {}
        self._frames: dict[str, np.ndarray] = {}

    def clips(self, split: str, *, cross_identity: bool = False) -> list[ClipRecord]:
        """Clips of ``split``; regular clips by default, or only the cross-identity ground-truth clips."""
        return [clip for clip in self.manifest.split(split) if is_cross_identity(clip) == cross_identity]

    def clip(self, clip_id: str) -> ClipRecord:
        for clip in self.manifest.clips:
            if clip.id == clip_id:
                return clip
        raise InputError(f"{self.root}: the manifest has no clip {clip_id!r}")

    def params(self, clip_id: str) -> ClipParams:
        if clip_id not in self._params:
            self._params[clip_id] = read_clip_params(self.root, clip_id)
        return self._params[clip_id]

    def frames(self, clip_id: str) -> np.ndarray:
        """All frames of a clip, uint8 [T, R0, R0, 3] at the dataset's resolution."""
        if clip_id not in self._frames:
            count = self.params(clip_id).num_frames
            self._frames[clip_id] = np.stack([read_frame(self.root, clip_id, t) for t in range(count)])
        return self._frames[clip_id]

    def images(self, clip_id: str, indices: np.ndarray | list[int]) -> Tensor:
        """Frames as float [K, 3, R, R] in [-1, 1] at the model's resolution."""
        pixels = torch.from_numpy(self.frames(clip_id)[np.asarray(indices)])  # [K, R0, R0, 3] uint8
        images = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if images.shape[-1] != self.resolution:
            images = F.interpolate(images, size=(self.resolution, self.resolution), mode="area")
        return images

    def batch(self, clip_id: str, indices: np.ndarray | list[int]) -> FrameBatch:
        params = self.params(clip_id)
        index = np.asarray(indices)
        return FrameBatch(
            images=self.images(clip_id, index),
            expression=torch.from_numpy(params.expression[index]),
            camera=torch.from_numpy(params.camera[index]),
            landmarks=torch.from_numpy(params.landmarks[index] * (self.resolution / self.manifest.resolution)),
        )

    def valid_indices(self, clip_id: str) -> np.ndarray:
        """Frames where the face was found (β measured, not interpolated)."""
        return np.flatnonzero(self.params(clip_id).valid)

    def measured_expressions(self, clips: list[ClipRecord]) -> np.ndarray:
        """β of every frame of ``clips`` where the face was found, in order. Shapes: -> [N, E]."""
        return np.concatenate([self.params(clip.id).expression[self.valid_indices(clip.id)] for clip in clips])


# |Δβ|₁ added to every candidate's weight in expression-weighted pair sampling (between two measured frames of
# one clip of the demo's synthetic dataset the median |Δβ|₁ is 1.34; 0.05 keeps identical frames possible but rare).
EXPRESSION_SAMPLING_FLOOR = 0.05


@dataclass(frozen=True)
class PairBatch:
    """Source and driving frames of the same clips. Shapes as in FrameBatch; ``driving`` holds β_D and p_D."""

    source: Tensor
    driving: FrameBatch


def sample_pairs(
    dataset: ClipDataset,
    clips: list[ClipRecord],
    batch_size: int,
    rng: np.random.Generator,
    sampling: str = "uniform",
) -> PairBatch:
    """(S, D) pairs from the same clip (paper §3.2): D is a frame where the face was found.

    ``sampling="expression"`` draws D with probability proportional to |β_D − β_S|₁ (plus a floor, so a clip
    that never changes expression still gives pairs): within a short clip most frames share the source's
    smile and brows, and uniform pairs teach the generator that copying the source's expression is enough.
    """
    sources, targets, expressions, cameras, landmarks = [], [], [], [], []
    for _ in range(batch_size):
        clip = clips[int(rng.integers(len(clips)))]
        valid = dataset.valid_indices(clip.id)
        count = dataset.params(clip.id).num_frames
        source = int(rng.integers(count))
        if not len(valid):
            driving = int(rng.integers(count))
        elif sampling == "expression":
            beta = dataset.params(clip.id).expression
            weights = np.abs(beta[valid] - beta[source]).sum(axis=1) + EXPRESSION_SAMPLING_FLOOR
            driving = int(valid[rng.choice(len(valid), p=weights / weights.sum())])
        else:
            driving = int(valid[rng.integers(len(valid))])
        pair = dataset.batch(clip.id, [source, driving])
        sources.append(pair.images[0])
        targets.append(pair.images[1])
        expressions.append(pair.expression[1])
        cameras.append(pair.camera[1])
        landmarks.append(pair.landmarks[1])
    return PairBatch(
        source=torch.stack(sources),
        driving=FrameBatch(
            torch.stack(targets), torch.stack(expressions), torch.stack(cameras), torch.stack(landmarks)
        ),
    )


def sample_clip_batch(
    dataset: ClipDataset, clips: list[ClipRecord], batch_size: int, rng: np.random.Generator
) -> tuple[ClipRecord, FrameBatch]:
    """K distinct valid frames of ONE clip (CLeBS, Eq. 1): every negative shares the positive's appearance."""
    eligible = [clip for clip in clips if len(dataset.valid_indices(clip.id)) >= 2]
    if not eligible:
        raise InputError(f"{dataset.root}: no clip has two frames with a detected face")
    clip = eligible[int(rng.integers(len(eligible)))]
    valid = dataset.valid_indices(clip.id)
    chosen = rng.choice(valid, size=min(batch_size, len(valid)), replace=False)
    return clip, dataset.batch(clip.id, np.sort(chosen))
