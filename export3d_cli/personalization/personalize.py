"""Personalise photos against one base model: check each photo, build its personal set, tune, write the file."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_cli.face.analysis import FaceAnalysis
from export3d_cli.models.export3d import Export3D
from export3d_cli.personalization.personal_set import PersonalSet, build_personal_set
from export3d_cli.personalization.personalized_file import file_sha256, save_personalized, weights_sha256
from export3d_cli.personalization.tuning import StepCallback, TuningConfig, tune
from export3d_cli.personalization.tuning_config import PERSONALIZATION_VERSION


@dataclass
class PreparedPhoto:
    """A photo that has been read and in which a face was found."""

    path: Path
    image: np.ndarray  # uint8 [H, W, 3]
    analysis: FaceAnalysis
    sha256: str
    resolution: int
    face_index: int = 0

    def personal_set(self, config: TuningConfig) -> PersonalSet:
        return build_personal_set(self.image, self.analysis, self.resolution, count=config.set_size, seed=config.seed)


class Personalizer:
    def __init__(self, model: Export3D, weights_directory: Path, base_sha256: str | None = None) -> None:
        """``base_sha256``: ``weights_sha256(weights_directory)`` if the caller has it already."""
        self.model = model.eval()
        self.weights_directory = weights_directory
        self.base_sha256 = base_sha256 or weights_sha256(weights_directory)

    @classmethod
    def from_weights(cls, reference: str | None) -> Personalizer:
        from export3d_cli.models.weights_io import default_weights, load_model, resolve_weights

        directory = resolve_weights(reference or default_weights())
        return cls(load_model(directory), directory)

    def prepare(self, photo: Path, *, face_index: int = 0) -> PreparedPhoto:
        """Read ``photo`` and find its face; InputError (exit 2) naming the file otherwise."""
        from export3d_cli.face.analysis import analyze_image
        from export3d_cli.media.image_io import load_image

        image = load_image(photo)
        resolution = self.model.config.resolution
        analysis = analyze_image(image, resolution=resolution, face_index=face_index, name=str(photo))
        return PreparedPhoto(photo, image, analysis, file_sha256(photo), resolution, face_index)

    def personalize(
        self,
        photo: PreparedPhoto,
        personal_set: PersonalSet,
        config: TuningConfig,
        target: Path,
        on_step: StepCallback | None = None,
    ) -> dict:
        """Tune a copy of the base model on ``personal_set`` and write the differences to ``target``."""
        tuned = copy.deepcopy(self.model)
        result = tune(tuned, personal_set, config, on_step=on_step)
        metadata = {
            "version": PERSONALIZATION_VERSION,
            "photo_sha256": photo.sha256,
            "photo_name": photo.path.name,
            "face_index": photo.face_index,
            "base_weights_sha256": self.base_sha256,
            "resolution": photo.resolution,
            "steps": config.steps,
            "batch": config.batch,
            "lr": config.lr,
            "seed": config.seed,
            "coordinates": config.coordinates,
            "seconds": round(result.seconds, 2),
            "losses": {"first": result.losses[0], "last": result.losses[-1]},
            "personal_set": {
                "images": len(personal_set),
                "dropped": personal_set.dropped,
                "measured_range": {signal: list(span) for signal, span in personal_set.signal_range.items()},
            },
        }
        save_personalized(target, tuned, self.model, metadata)
        return metadata
