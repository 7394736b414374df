"""Evaluation on a dataset's test split: same-identity and cross-identity PSNR / SSIM, with a baseline.

- Same identity: for each regular test clip, the source S is the clip's first
  frame with a detected face; every other frame D is reconstructed from S,
  β_D and p_D and compared with D.
- Cross identity (synthetic data only): a cross clip renders identity A with
  identity B's expressions and cameras. The source is A's own clip's first frame,
  the driving signals are the cross clip's (β measured on B), the target is the
  cross clip's frame — ground truth no real dataset has.
- Only targets whose β was measured (``valid``) are scored: an interpolated β is
  a guess, and scoring it would mix the pipeline's gaps into the model's error.
- Baseline: "output = the aligned source image", so a reader sees how much the
  model adds. PSNR and SSIM are averaged over frames (PSNR per frame, then mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from export3d_cli.models.export3d import Export3D
from export3d_cli.training.dataset import ClipDataset
from export3d_cli.training.losses import psnr, ssim


@dataclass
class _Scores:
    psnr: list[float]
    ssim: list[float]
    psnr_baseline: list[float]
    ssim_baseline: list[float]

    @staticmethod
    def empty() -> _Scores:
        return _Scores([], [], [], [])

    def mean(self, values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None


def _first_valid(dataset: ClipDataset, clip_id: str) -> int:
    valid = dataset.valid_indices(clip_id)
    return int(valid[0]) if len(valid) else 0


@torch.no_grad()
def _score(
    model: Export3D,
    dataset: ClipDataset,
    source_clip: str,
    source_index: int,
    target_clip: str,
    indices: np.ndarray,
    scores: _Scores,
    device: torch.device,
    batch_size: int,
) -> None:
    source = dataset.images(source_clip, [source_index]).to(device)
    features = model.encode_source(source)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        target = dataset.batch(target_clip, chunk)
        output = model.render(features, target.expression.to(device), target.camera.to(device)).image.clamp(-1, 1)
        images = target.images.to(device)
        baseline = source.expand_as(images)
        scores.psnr += psnr(output, images).tolist()
        scores.ssim += ssim(output, images).tolist()
        scores.psnr_baseline += psnr(baseline, images).tolist()
        scores.ssim_baseline += ssim(baseline, images).tolist()


def evaluate_model(
    model: Export3D,
    dataset: ClipDataset,
    *,
    split: str = "test",
    max_clips: int | None = None,
    max_frames: int | None = None,
    batch_size: int = 8,
    progress=None,
) -> dict[str, float | int | None]:
    """The metrics of the module docstring; None where the dataset has no such clips."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    same, cross = _Scores.empty(), _Scores.empty()
    regular = dataset.clips(split)[:max_clips]
    crosses = dataset.clips(split, cross_identity=True)[:max_clips]
    total = len(regular) + len(crosses)
    try:
        for done, clip in enumerate(regular):
            source_index = _first_valid(dataset, clip.id)
            targets = np.array([t for t in dataset.valid_indices(clip.id) if t != source_index])
            _score(
                model, dataset, clip.id, source_index, clip.id, _limit(targets, max_frames), same, device, batch_size
            )
            if progress:
                progress(done + 1, total)
        for done, clip in enumerate(crosses, start=len(regular)):
            appearance = str(clip.extra["appearance_clip"])
            source_index = _first_valid(dataset, appearance)
            targets = dataset.valid_indices(clip.id)
            _score(
                model,
                dataset,
                appearance,
                source_index,
                clip.id,
                _limit(targets, max_frames),
                cross,
                device,
                batch_size,
            )
            if progress:
                progress(done + 1, total)
    finally:
        model.train(was_training)
    return {
        "psnr_same": same.mean(same.psnr),
        "ssim_same": same.mean(same.ssim),
        "psnr_cross": cross.mean(cross.psnr),
        "ssim_cross": cross.mean(cross.ssim),
        "psnr_same_baseline": same.mean(same.psnr_baseline),
        "psnr_cross_baseline": cross.mean(cross.psnr_baseline),
        "ssim_same_baseline": same.mean(same.ssim_baseline),
        "ssim_cross_baseline": cross.mean(cross.ssim_baseline),
        "frames": len(same.psnr) + len(cross.psnr),
    }


def _limit(indices: np.ndarray, max_frames: int | None) -> np.ndarray:
    """Evenly spaced subset of at most ``max_frames`` indices (all of them when None)."""
    if max_frames is None or len(indices) <= max_frames:
        return indices
    step = len(indices) / max_frames
    return indices[[math.floor(i * step) for i in range(max_frames)]]
