"""Accumulate the paper's metrics over (generated, driving[, reference]) frame pairs.

One object per condition (e.g. same-identity, or the copy-the-source baseline).
Every pair counts in ``frames``; ``face_found`` is the share of generated
frames with a face. AED, APD and expression_r use only the pairs where both the
generated and the driving frame have a face, AKD only those where generated and
reference both do; the pairs left out are counted, never filled in. CSIM is
averaged over generated frames with a face.

Pairs from several clips (``evaluate``) are grouped with ``new_clip``:
expression_r then centres each clip's series on its own means before pooling,
so it measures whether the face follows the driver *within* a clip. Pooled raw
series would also correlate clip-level offsets — e.g. a copied source whose
resting smile matches its own clip's — which is not following the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from export3d_cli.metrics.expression import average_expression_distance, expression_correlations
from export3d_cli.metrics.face_measurement import FaceMeasurement
from export3d_cli.metrics.identity import identity_similarity
from export3d_cli.metrics.keypoints import keypoint_distance
from export3d_cli.metrics.pose import average_pose_distance


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass
class ReenactmentScores:
    frames: int = 0
    generated_faces: int = 0
    driving_missing: int = 0
    reference_missing: int = 0
    csim_source: list[float] = field(default_factory=list)
    csim_driver: list[float] = field(default_factory=list)
    generated_expression: list[np.ndarray] = field(default_factory=list)
    driving_expression: list[np.ndarray] = field(default_factory=list)
    generated_angles: list[np.ndarray] = field(default_factory=list)
    driving_angles: list[np.ndarray] = field(default_factory=list)
    akd: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    clip_of_pair: list[int] = field(default_factory=list)
    clip: int = 0

    def new_clip(self) -> None:
        """Pairs added from now on belong to another clip (see the module docstring)."""
        self.clip += 1

    def add(
        self,
        generated: FaceMeasurement | None,
        driving: FaceMeasurement | None,
        *,
        source_embedding: np.ndarray | None = None,
        driver_embedding: np.ndarray | None = None,
        reference: FaceMeasurement | None = None,
        with_reference: bool = False,
    ) -> None:
        """One pair. Embeddings/keypoints are used when the measurements carry them."""
        self.frames += 1
        self.driving_missing += driving is None
        self.reference_missing += with_reference and reference is None
        if generated is None:
            return
        self.generated_faces += 1
        if generated.embedding is not None:
            if source_embedding is not None:
                self.csim_source.append(identity_similarity(generated.embedding, source_embedding))
            if driver_embedding is not None:
                self.csim_driver.append(identity_similarity(generated.embedding, driver_embedding))
        if driving is not None:
            self.generated_expression.append(generated.expression)
            self.driving_expression.append(driving.expression)
            self.generated_angles.append(generated.angles)
            self.driving_angles.append(driving.angles)
            self.clip_of_pair.append(self.clip)
        if reference is not None and generated.keypoints is not None and reference.keypoints is not None:
            self.akd.append(keypoint_distance(generated.keypoints, reference.keypoints, reference.crop_transform))

    def add_unmeasured(self, count: int) -> None:
        """Pairs scored for pixels only (no face measurement): they count in ``frames`` and nowhere else."""
        self.frames += count

    def add_image_quality(self, psnr: float, ssim: float) -> None:
        self.psnr.append(psnr)
        self.ssim.append(ssim)

    @property
    def expression_pairs(self) -> int:
        return len(self.generated_expression)

    def aed(self) -> float | None:
        if not self.generated_expression:
            return None
        return average_expression_distance(np.stack(self.generated_expression), np.stack(self.driving_expression))

    def apd(self) -> float | None:
        if not self.generated_angles:
            return None
        return average_pose_distance(np.stack(self.generated_angles), np.stack(self.driving_angles))

    def expression_r(self) -> dict[str, float | None]:
        if not self.generated_expression:
            return expression_correlations(np.zeros((0, 52)), np.zeros((0, 52)))
        generated, driving = np.stack(self.generated_expression), np.stack(self.driving_expression)
        clips = np.array(self.clip_of_pair)
        for clip in np.unique(clips):
            rows = clips == clip
            generated[rows] -= generated[rows].mean(axis=0)
            driving[rows] -= driving[rows].mean(axis=0)
        return expression_correlations(generated, driving)

    def face_found(self) -> float | None:
        return self.generated_faces / self.frames if self.frames else None

    def summary(self) -> dict:
        """All metrics (None where nothing was measured) and the counts behind them."""
        return {
            "frames": self.frames,
            "face_found": self.face_found(),
            "csim_source": _mean(self.csim_source),
            "csim_driver": _mean(self.csim_driver),
            "aed": self.aed(),
            "apd": self.apd(),
            "expression_r": self.expression_r(),
            "psnr": _mean(self.psnr),
            "ssim": _mean(self.ssim),
            "akd": _mean(self.akd),
            "expression_pairs": self.expression_pairs,
            "akd_pairs": len(self.akd),
            "driving_missing": self.driving_missing,
            "reference_missing": self.reference_missing,
        }
