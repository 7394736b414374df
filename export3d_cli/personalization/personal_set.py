"""A photo's personal training set: the photo itself and the same face warped to the rig's expressions.

Each warped image is analysed by the face pipeline exactly like a user's photo (crop, camera, 52 blendshapes),
so the expressions the model is tuned on are the ones it will be driven by, as the pipeline measures them — a
rig control the pipeline does not read (a blink it sees as half closed) teaches nothing wrong. Images in which the
pipeline finds no face are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from export3d_cli.face.analysis import FaceAnalysis, analyze_observation
from export3d_cli.face.landmarker import FaceLandmarker
from export3d_cli.metrics.expression import EXPRESSION_SIGNALS, expression_signal
from export3d_cli.personalization.expression_warp import ExpressionWarp
from export3d_cli.synth.face_rig import CONTROL_INDEX, CONTROL_NAMES


def _controls(**amounts: float) -> np.ndarray:
    values = np.zeros(len(CONTROL_NAMES))
    for name, amount in amounts.items():
        values[CONTROL_INDEX[name]] = amount
    return values


# Held expressions over the whole range (each alone, one-sided, and the combinations faces make).
NAMED_EXPRESSIONS: dict[str, np.ndarray] = {
    "jaw 0.25": _controls(jaw_open=0.25),
    "jaw 0.5": _controls(jaw_open=0.5),
    "jaw 0.75": _controls(jaw_open=0.75),
    "jaw 1": _controls(jaw_open=1.0),
    "smile 0.5": _controls(smile_left=0.5, smile_right=0.5),
    "smile 1": _controls(smile_left=1.0, smile_right=1.0),
    "smile left": _controls(smile_left=1.0),
    "smile right": _controls(smile_right=1.0),
    "blink 0.5": _controls(blink_left=0.5, blink_right=0.5),
    "blink 1": _controls(blink_left=1.0, blink_right=1.0),
    "wink left": _controls(blink_left=1.0),
    "wink right": _controls(blink_right=1.0),
    "brows up 0.5": _controls(brow_raise=0.5),
    "brows up": _controls(brow_raise=1.0),
    "frown": _controls(brow_lower=1.0),
    "pucker": _controls(pucker=1.0),
    "laugh": _controls(jaw_open=0.6, smile_left=1.0, smile_right=1.0, blink_left=0.5, blink_right=0.5),
    "surprise": _controls(jaw_open=0.8, brow_raise=1.0),
    "shout": _controls(jaw_open=1.0, brow_lower=0.8),
    "squint": _controls(blink_left=0.7, blink_right=0.7, brow_lower=0.6),
    "talk o": _controls(jaw_open=0.4, pucker=0.7),
    "grin": _controls(jaw_open=0.3, smile_left=0.8, smile_right=0.8),
}


TURNS = ((-20.0, 0.0), (20.0, 0.0), (0.0, -10.0), (0.0, 10.0))  # the photo's own expression from nearby cameras
MAX_YAW, MAX_PITCH = 25.0, 12.0  # degrees: how far the random mixtures turn the face


def expression_schedule(count: int, seed: int) -> list[tuple[np.ndarray, float, float]]:
    """(controls [8], yaw, pitch) per image: the named expressions facing the camera as in the photo, the photo's
    expression turned to nearby cameras, then random mixtures (each control off or uniform in [0, 1]) seen from
    random nearby cameras, up to ``count``."""
    schedule = [(values, 0.0, 0.0) for values in NAMED_EXPRESSIONS.values()]
    schedule += [(np.zeros(len(CONTROL_NAMES)), yaw, pitch) for yaw, pitch in TURNS]
    schedule = schedule[:count]
    rng = np.random.default_rng(seed)
    while len(schedule) < count:
        on = rng.random(len(CONTROL_NAMES)) < 0.35
        values = np.where(on, rng.random(len(CONTROL_NAMES)), 0.0)
        schedule.append((values, float(rng.uniform(-MAX_YAW, MAX_YAW)), float(rng.uniform(-MAX_PITCH, MAX_PITCH))))
    return schedule


@dataclass
class PersonalSet:
    """Index 0 is the photo itself. Shapes: crops [N, R, R, 3] uint8, expression [N, 52], camera [N, 25]."""

    crops: np.ndarray
    expression: np.ndarray
    camera: np.ndarray
    controls: np.ndarray  # [N, 8] the rig controls each image was warped with (zeros for the photo)
    turns: np.ndarray  # [N, 2] yaw, pitch (degrees) the face was turned by (zeros: the photo's camera)
    dropped: int = 0  # warped images in which the face pipeline found no face
    signal_range: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)


def _detection_region(landmarks: np.ndarray, shape: tuple) -> tuple[int, int, int, int]:
    """The face's bounding box grown by its size on every side, clipped to the photo: x0, y0, x1, y1."""
    low, high = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
    size = float((high - low).max())
    x0, y0 = np.floor(low - size).astype(int)
    x1, y1 = np.ceil(high + size).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def build_personal_set(
    photo: np.ndarray,
    analysis: FaceAnalysis,
    resolution: int,
    *,
    count: int = 48,
    seed: int = 0,
    landmarker: FaceLandmarker | None = None,
) -> PersonalSet:
    """Warp ``photo`` (uint8 [H, W, 3], analysed as ``analysis``) to ``count`` expressions and re-measure each.

    Images facing the camera as in the photo keep the photo's crop and camera: the warp moves the face, not the
    head, and re-aligning each on its own landmarks would shift the whole crop whenever the jaw drops — a change
    the person's expression directions would then have to learn everywhere in the picture. Turned faces (nearby
    cameras, so the person's tri-planes are not fitted to one view only) are aligned and measured like any photo.
    """
    from export3d_cli.face.alignment import alignment_transform, warp_to_crop

    warp = ExpressionWarp(photo, analysis.landmarks, analysis.camera)
    transform = alignment_transform(analysis.landmarks, analysis.camera, resolution)
    crops = [warp_to_crop(photo, transform, resolution)]
    expressions, controls = [analysis.expression], [np.zeros(len(CONTROL_NAMES))]
    cameras, views = [analysis.camera], [(0.0, 0.0)]
    dropped = 0
    own = landmarker or FaceLandmarker("image")
    try:
        x0, y0, x1, y1 = _detection_region(analysis.landmarks, photo.shape)
        for values, yaw, pitch in expression_schedule(count, seed):
            warped = warp(values, yaw, pitch)
            # Only the face's surroundings: faster, and other faces in the photo cannot be picked instead.
            region = np.ascontiguousarray(warped[y0:y1, x0:x1])
            faces = own.detect(region)
            if not faces:
                dropped += 1
                continue
            if yaw == 0.0 and pitch == 0.0:
                crops.append(warp_to_crop(warped, transform, resolution))
                cameras.append(analysis.camera)
            else:  # the head turned: aligned and measured like any photo
                turned = analyze_observation(region, faces[0], resolution, len(faces))
                crops.append(turned.crop)
                cameras.append(turned.camera)
            expressions.append(faces[0].blendshapes)
            controls.append(values)
            views.append((yaw, pitch))
    finally:
        if landmarker is None:
            own.close()
    expression = np.stack(expressions).astype(np.float32)
    return PersonalSet(
        crops=np.stack(crops),
        expression=expression,
        camera=np.stack(cameras).astype(np.float32),
        turns=np.array(views, dtype=np.float32),
        controls=np.stack(controls).astype(np.float32),
        dropped=dropped,
        signal_range={
            signal: (float(values.min()), float(values.max()))
            for signal in EXPRESSION_SIGNALS
            for values in [expression_signal(expression, signal)]
        },
    )
