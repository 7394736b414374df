"""Driving signals for animation: per-frame β and camera p from a driving video or a motion file,
with the pose and expression modes users choose.

- pose ``driving``: the driver's head pose (camera) per frame; ``relative``: the
  source photo's head pose turned as the driver's head turns from its first frame
  (a model fitted to one photo is only right near that photo's view: a personalised
  one); ``source``: the source photo's own camera throughout; ``frontal``: EG3D's
  frontal look-at camera.
- expression ``absolute``: the driver's β; ``relative``: the source's β plus the
  driver's change from the frame level matching the source's (``relative_reference``;
  clipped to [0, 1]) — the usual remedy when driver and source are different
  people, since absolute blendshapes carry the driver's identity (a resting mouth
  that reads as slightly open, say).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from export3d_cli.errors import UsageError
from export3d_cli.face.head_pose import HeadPose, look_at_pose
from export3d_cli.face.motion_file import Motion, is_motion_file, load_motion

POSE_MODES = ("driving", "relative", "source", "frontal")
EXPRESSION_MODES = ("absolute", "relative")
AUTO = "auto"  # relative pose and expression for a personalised model, else driving pose and absolute expression


def resolve_modes(pose: str, expression: str, personalized: bool) -> tuple[str, str]:
    """``auto`` made concrete. A personalised model has learnt one person from one photo: it is right near that
    photo's view and expression, so it follows the driver's changes (relative) rather than its absolute pose and
    blendshapes — which also carry the driver's identity."""
    if pose == AUTO:
        pose = "relative" if personalized else "driving"
    if expression == AUTO:
        expression = "relative" if personalized else "absolute"
    return pose, expression


@dataclass(frozen=True)
class Driving:
    """Per-frame signals. Shapes: expression [T, 52], camera [T, 25], valid [T]."""

    motion: Motion
    path: Path  # what the user passed (video or motion file)
    video: Path | None  # the driving video (frames for --side-by-side, audio), if it exists
    decode_error: str | None = None  # why decoding the driving video stopped before its end, if it did
    video_problem: str | None = None  # why a motion file's driving video (audio, --side-by-side) is unavailable

    @property
    def frames(self) -> int:
        return self.motion.frames

    @property
    def missing(self) -> int:
        return int((~self.motion.valid).sum())


def load_driving(path: Path, *, smoothing: float, max_frames: int | None, progress=None) -> Driving:
    """A motion file (``export3d extract``) is read as is; anything else is analysed as a video."""
    from export3d_cli.face.video_analysis import Smoothing, analyze_video

    # An .npz is meant as a motion file: load_motion then says what is wrong with it (a missing key, ...) instead
    # of the video decoder calling it "not a video".
    is_motion = is_motion_file(path) or Path(path).suffix.lower() == ".npz"
    video_problem = None
    if is_motion:
        motion = load_motion(path)
        video, video_problem = locate_driving_video(motion.source, path)
    else:
        analysed = analyze_video(
            path, smoothing=Smoothing(smoothing), max_frames=max_frames, progress=progress, landmarks=False
        )
        motion, video = analysed.motion(), path
    decode_error = None if is_motion else analysed.decode_error
    driving = Driving(motion=motion, path=path, video=video, decode_error=decode_error, video_problem=video_problem)
    return with_frames(driving, max_frames) if max_frames is not None and motion.frames > max_frames else driving


def locate_driving_video(source: str, motion_path: Path) -> tuple[Path | None, str | None]:
    """The driving video a motion file was extracted from, or (None, why not).

    ``export3d extract`` stores the absolute path. Files written before it did hold the path as typed, relative
    to a working folder nobody recorded; such a path is looked up next to the motion file only -- never in the
    current folder, where the same name may be another video whose audio would be copied without a word.
    """
    if not source:
        return None, "the motion file names no driving video"
    stored = Path(source)
    candidate = stored if stored.is_absolute() else Path(motion_path).resolve().parent / stored
    if not candidate.is_file():
        return None, f"its driving video {candidate} is not there"
    return candidate, None


def drive(
    driving: Driving, source_expression: np.ndarray, source_camera: np.ndarray, pose: str, expression: str
) -> tuple[np.ndarray, np.ndarray]:
    """(β [T, 52], p [T, 25]) to render for one source under the chosen modes."""
    if pose not in POSE_MODES:
        raise UsageError(f"--pose must be one of {', '.join(POSE_MODES)}, got {pose!r}")
    if expression not in EXPRESSION_MODES:
        raise UsageError(f"--expression must be one of {', '.join(EXPRESSION_MODES)}, got {expression!r}")
    motion = driving.motion
    frames = motion.frames
    if expression == "relative":
        reference = relative_reference(motion, source_expression)
        betas = np.clip(source_expression[None] + motion.expression - reference[None], 0.0, 1.0)
    else:
        betas = motion.expression
    if pose == "driving":
        cameras = motion.camera
    elif pose == "relative":
        cameras = relative_cameras(motion.camera, motion.valid, source_camera)
    elif pose == "source":
        cameras = np.repeat(np.asarray(source_camera, np.float32)[None], frames, axis=0)
    else:
        cameras = np.repeat(look_at_pose(0.0, 0.0).label()[None], frames, axis=0)
    return betas.astype(np.float32), cameras.astype(np.float32)


def relative_reference(motion: Motion, source_expression: np.ndarray) -> np.ndarray:
    """The driver's β [E] that stands for the source's own β [E] in ``relative`` expression mode.

    Per blendshape, the driver's value at the quantile (over its frames with a face) that the source's value is at:
    a source that smiles at 0.9 is matched with the driver's 90th-percentile smile, a closed mouth (0) with the
    driver's most closed. The driver's changes then reach the source in both directions as far as [0, 1] allows.
    A fixed reference frame (the first) cannot do that: with a smiling photo and a driver whose first frame does
    not smile, every change is upward and clipped at 1, and the output's smile never moves.
    """
    frames = motion.expression[motion.valid] if motion.valid.any() else motion.expression
    levels = np.clip(np.asarray(source_expression, np.float64), 0.0, 1.0)
    return np.array([np.quantile(frames[:, k], levels[k]) for k in range(frames.shape[1])], np.float32)


def relative_cameras(cameras: np.ndarray, valid: np.ndarray, source_camera: np.ndarray) -> np.ndarray:
    """Cameras [T, 25] that turn the source's head by the driver's rotation since its first valid frame:
    R_t = (D_t D_0ᵀ) S, with D the driver's and S the source's head rotations (head frame → image axes)."""
    rotations = [HeadPose.from_cam2world(np.asarray(c[:16], np.float64).reshape(4, 4)).rotation for c in cameras]
    indices = np.flatnonzero(valid)
    reference = rotations[indices[0] if len(indices) else 0]
    source = HeadPose.from_cam2world(np.asarray(source_camera[:16], np.float64).reshape(4, 4)).rotation
    return np.stack([HeadPose(rotation @ reference.T @ source).label() for rotation in rotations])


def with_frames(driving: Driving, frames: int) -> Driving:
    """The first ``frames`` frames only."""
    return replace(driving, motion=driving.motion.first(frames))
