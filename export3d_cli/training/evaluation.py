"""Evaluation on a dataset's test split in the paper's Table 1 layout, each metric beside a baseline.

- Same identity (self-reenactment): for each regular test clip, the source S
  is the clip's first frame with a detected face; every other frame D is
  reconstructed from S, β_D and p_D. D is both the driving frame and the ground
  truth: PSNR, SSIM, AKD, CSIM (vs S), AED, APD, face_found, expression_r.
- Cross identity, synthetic data: a cross clip renders identity A with
  identity B's expressions and cameras. The source is A's own clip's first
  frame, the driving signals and driving frames are B's, and the cross clip's
  frame is the ground truth (PSNR, SSIM) — which no real dataset has.
- Cross identity, real data (no cross clips, e.g. from ``export3d preprocess``):
  each test clip's source is driven by the clip of the next test identity in
  manifest order (a different person): CSIM, AED, APD, face_found,
  expression_r; no PSNR/SSIM.
- Only driving frames whose β was measured (``valid``) are used: an
  interpolated β is a guess, and scoring it would mix the pipeline's gaps into
  the model's error.
- Baseline: "output = the aligned source image", so a reader sees how much the
  model adds (its CSIM is 1 by construction; its expression_r is undefined, the
  source does not move). PSNR/SSIM are per frame, then averaged.

The face metrics (``metrics/``) need MediaPipe only; CSIM and AKD also need the
``eval`` extra (dlib) and are left out (None) without it or when not asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from export3d_cli.data.dataset_layout import ClipRecord
from export3d_cli.metrics.face_measurement import FaceMeter
from export3d_cli.metrics.image_quality import psnr, ssim, to_uint8_frames
from export3d_cli.metrics.reenactment_scores import ReenactmentScores
from export3d_cli.models.export3d import Export3D
from export3d_cli.training.dataset import ClipDataset

TABLE_METRICS = ("psnr", "ssim", "akd", "csim", "aed", "apd", "face_found")


@dataclass
class _Condition:
    """The model's scores and the copy-the-source baseline's, for one condition (same or cross identity)."""

    model: ReenactmentScores = field(default_factory=ReenactmentScores)
    baseline: ReenactmentScores = field(default_factory=ReenactmentScores)


@dataclass(frozen=True)
class _Judges:
    meter: FaceMeter | None
    identity: bool

    def measure(self, image: np.ndarray, *, identity: bool = False, keypoints: bool = False):
        if self.meter is None:
            return None
        return self.meter.measure(image, identity=identity and self.identity, keypoints=keypoints and self.identity)


def _first_valid(dataset: ClipDataset, clip_id: str) -> int:
    valid = dataset.valid_indices(clip_id)
    return int(valid[0]) if len(valid) else 0


@torch.no_grad()
def _score(
    model: Export3D,
    dataset: ClipDataset,
    judges: _Judges,
    condition: _Condition,
    *,
    source: tuple[str, int],
    driving_clip: str,
    indices: np.ndarray,
    truth_clip: str | None,
    same_identity: bool,
    batch_size: int,
) -> None:
    """Render ``indices`` of ``driving_clip`` from ``source`` (clip, frame) and add every metric to ``condition``."""
    device = next(model.parameters()).device
    source_image = dataset.images(source[0], [source[1]]).to(device)
    features = model.encode_source(source_image)
    source_face = judges.measure(to_uint8_frames(source_image)[0], identity=True, keypoints=same_identity)
    source_embedding = None if source_face is None else source_face.embedding
    condition.model.new_clip()
    condition.baseline.new_clip()
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        driving = dataset.batch(driving_clip, chunk)
        output = model.render(features, driving.expression.to(device), driving.camera.to(device)).image.clamp(-1, 1)
        if truth_clip is not None:
            truth = dataset.images(truth_clip, chunk).to(device)
            baseline = source_image.expand_as(truth)
            condition.model.psnr += psnr(output, truth).tolist()
            condition.model.ssim += ssim(output, truth).tolist()
            condition.baseline.psnr += psnr(baseline, truth).tolist()
            condition.baseline.ssim += ssim(baseline, truth).tolist()
        if judges.meter is None:
            condition.model.add_unmeasured(len(chunk))
            condition.baseline.add_unmeasured(len(chunk))
            continue
        for generated_image, driving_image in zip(
            to_uint8_frames(output), to_uint8_frames(driving.images), strict=True
        ):
            # Same identity: the driving frame is also the ground truth that AKD compares with.
            driving_face = judges.measure(driving_image, keypoints=same_identity)
            generated_face = judges.measure(generated_image, identity=True, keypoints=same_identity)
            reference = driving_face if same_identity else None
            for scores, face in ((condition.model, generated_face), (condition.baseline, source_face)):
                scores.add(
                    face,
                    driving_face,
                    source_embedding=source_embedding,
                    reference=reference,
                    with_reference=same_identity,
                )


def _real_cross_pairs(regular: list[ClipRecord]) -> list[tuple[ClipRecord, ClipRecord]]:
    """(appearance clip, driving clip of another identity) for each clip; none with a single identity."""
    pairs = []
    for position, clip in enumerate(regular):
        others = regular[position + 1 :] + regular[:position]
        driver = next((other for other in others if other.identity != clip.identity), None)
        if driver is not None:
            pairs.append((clip, driver))
    return pairs


def evaluate_model(
    model: Export3D,
    dataset: ClipDataset,
    *,
    split: str = "test",
    max_clips: int | None = None,
    max_frames: int | None = None,
    batch_size: int = 8,
    face_metrics: bool = True,
    identity_metrics: bool = True,
    progress=None,
) -> dict:
    """The metrics of the module docstring as flat keys (``aed_same``, ``psnr_cross_baseline``, ...).

    ``face_metrics`` turns on everything measured by the face pipeline; ``identity_metrics`` (which needs
    the ``eval`` extra) adds CSIM and AKD. Values are None where the dataset has no such frames.
    """
    was_training = model.training
    model.eval()
    same, cross = _Condition(), _Condition()
    regular = dataset.clips(split)[:max_clips]
    crosses = dataset.clips(split, cross_identity=True)[:max_clips]
    real_cross = [] if crosses else _real_cross_pairs(regular)
    total = len(regular) + len(crosses) + len(real_cross)
    meter = FaceMeter() if face_metrics else None
    judges = _Judges(meter, identity_metrics)
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    options = {"batch_size": batch_size}
    try:
        for clip in regular:
            source_index = _first_valid(dataset, clip.id)
            targets = np.array([t for t in dataset.valid_indices(clip.id) if t != source_index], dtype=np.int64)
            _score(
                model,
                dataset,
                judges,
                same,
                source=(clip.id, source_index),
                driving_clip=clip.id,
                indices=_limit(targets, max_frames),
                truth_clip=clip.id,
                same_identity=True,
                **options,
            )
            advance()
        for clip in crosses:
            appearance, driving_clip = str(clip.extra["appearance_clip"]), str(clip.extra["driving_clip"])
            # The cross clip's β/camera are the driver's, measured on the driver's own frames.
            targets = np.intersect1d(dataset.valid_indices(clip.id), dataset.valid_indices(driving_clip))
            _score(
                model,
                dataset,
                judges,
                cross,
                source=(appearance, _first_valid(dataset, appearance)),
                driving_clip=driving_clip,
                indices=_limit(targets, max_frames),
                truth_clip=clip.id,
                same_identity=False,
                **options,
            )
            advance()
        for appearance, driver in real_cross:
            _score(
                model,
                dataset,
                judges,
                cross,
                source=(appearance.id, _first_valid(dataset, appearance.id)),
                driving_clip=driver.id,
                indices=_limit(dataset.valid_indices(driver.id), max_frames),
                truth_clip=None,
                same_identity=False,
                **options,
            )
            advance()
    finally:
        if meter is not None:
            meter.close()
        model.train(was_training)
    metrics: dict = {}
    for name, condition in (("same", same), ("cross", cross)):
        for suffix, scores in (("", condition.model), ("_baseline", condition.baseline)):
            summary = scores.summary()
            for metric in TABLE_METRICS:
                key = "csim_source" if metric == "csim" else metric
                metrics[f"{metric}_{name}{suffix}"] = (
                    summary[key] if face_metrics or metric in ("psnr", "ssim") else None
                )
            metrics[f"expression_r_{name}{suffix}"] = summary["expression_r"] if face_metrics else None
        metrics[f"frames_{name}"] = condition.model.frames
        metrics[f"face_pairs_{name}"] = condition.model.expression_pairs
    metrics["cross_ground_truth"] = bool(crosses)
    metrics["frames"] = same.model.frames + cross.model.frames
    return metrics


def _limit(indices: np.ndarray, max_frames: int | None) -> np.ndarray:
    """Evenly spaced subset of at most ``max_frames`` indices (all of them when None)."""
    if max_frames is None or len(indices) <= max_frames:
        return indices
    step = len(indices) / max_frames
    return indices[[math.floor(i * step) for i in range(max_frames)]]
