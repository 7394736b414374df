"""Analyse a face through a video: per-frame β and camera p, tracked, gap-filled and smoothed.

Frames are streamed (memory is flat in the video's length). MediaPipe's video
mode tracks faces between frames; among several faces we keep following the one
nearest to where the chosen face was. Frames where it is not found are marked
invalid, filled by interpolation (held at the ends) and counted. Smoothing is a
One-Euro filter (Casiez et al. 2012), which removes jitter at rest but lets fast
motion (blinks, speech) through; the head pose is smoothed as an axis-angle
vector and the crop transform as (log scale, angle, translation), charts in which
averaging is meaningful.

``fps`` resamples the video to a fixed rate by picking, for each output time
k / fps, the nearest decoded frame (what ``export3d preprocess`` needs); the
default keeps every frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_cli.errors import InputError, UsageError
from export3d_cli.face.alignment import SimilarityTransform, alignment_transform
from export3d_cli.face.blendshapes import EXPRESSION_DIM
from export3d_cli.face.head_pose import HeadPose
from export3d_cli.face.landmarker import LANDMARK_COUNT, FaceLandmarker, FaceObservation
from export3d_cli.face.motion_file import Motion
from export3d_cli.face.temporal import OneEuroConfig, fill_gaps, one_euro_filter
from export3d_cli.media.matroska_stream import increasing_at_stream_resolution

ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Smoothing:
    """Temporal smoothing strength: 0 turns it off, 1 is the default, larger is smoother (and laggier)."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        # inf would pass a "min 0" option check and only fail after a whole video has been analysed.
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise UsageError(f"--smoothing must be a finite number >= 0, got {self.strength}")

    def config(self, min_cutoff: float, beta: float) -> OneEuroConfig | None:
        if self.strength <= 0:
            return None
        return OneEuroConfig(min_cutoff=min_cutoff / self.strength, beta=beta / self.strength, d_cutoff=1.0)

    @property
    def expression(self) -> OneEuroConfig | None:
        # Blendshape speeds in speech reach several units/s: beta opens the filter for them.
        return self.config(min_cutoff=1.5, beta=5.0)

    @property
    def pose(self) -> OneEuroConfig | None:
        # Radians; also used for the crop transform in units of the crop size.
        return self.config(min_cutoff=1.0, beta=2.0)


@dataclass(frozen=True)
class VideoMotion:
    """Per-frame face motion of a video.

    Shapes: expression [T, 52] float32, camera [T, 25] float32, valid [T] bool,
    landmarks [T, 478, 2] float32 (image pixels, gaps filled), transforms [T, 2, 3]
    float64 (image → R×R crop, smoothed). ``frame_indices`` [T] are the decoded
    frames used (differs from arange(T) when resampled). ``frame_times`` [T] float64
    seconds: each frame's own time in a variable-frame-rate video analysed frame by
    frame (None for a constant rate, where frame k is at k / fps, and when resampled).
    """

    expression: np.ndarray
    camera: np.ndarray
    valid: np.ndarray
    landmarks: np.ndarray | None  # None when analysed with landmarks=False (driving: only β and p are used)
    transforms: np.ndarray | None
    frame_indices: np.ndarray
    fps: float
    source: str
    resolution: int
    decode_error: str | None
    frame_times: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return int(self.valid.shape[0])

    @property
    def missing(self) -> int:
        """Frames in which the face was not found (filled by interpolation)."""
        return int((~self.valid).sum())

    def transform(self, index: int) -> SimilarityTransform:
        return SimilarityTransform(self.transforms[index])

    def motion(self) -> Motion:
        """The part a motion file keeps."""
        return Motion(self.expression, self.camera, self.valid, self.fps, self.source, self.frame_times)


def sampled_frames(
    reader: Iterator[np.ndarray], source_fps: float, fps: float | None, frame_times: np.ndarray | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (decoded frame index, frame) at rate ``fps`` (nearest frame; repeats when upsampling).

    Output k is at k / fps after the first frame. Without ``frame_times`` decoded frame i is at i / source_fps;
    with them (a variable-rate video's own times [N] in seconds) each frame is placed at its own time, so a phone
    clip's bursts and stalls are sampled where they happened rather than as if its frames were evenly spaced.
    """
    if fps is None:
        yield from enumerate(reader)
        return
    if frame_times is not None:
        yield from _sampled_by_time(reader, source_fps, fps, np.asarray(frame_times, np.float64))
        return
    step = source_fps / fps
    next_output = 0
    for index, frame in enumerate(reader):
        # floor(x + 0.5), not round(): Python rounds halves to even, which makes 25 -> 50 fps judder.
        while math.floor(next_output * step + 0.5) == index:
            yield index, frame
            next_output += 1
        # A frame rate rounding can skip past `index`; the next decoded frame then serves that output.
        while math.floor(next_output * step + 0.5) < index:
            next_output += 1


_TIE_MARGIN = 1e-9  # seconds


def _sampled_by_time(
    reader: Iterator[np.ndarray], source_fps: float, fps: float, frame_times: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """``sampled_frames`` for frames at their own times: frame i serves the outputs nearer to it than to its
    neighbours (a tie goes to the later frame, as in the constant-rate rule); the last frame, and any frame decoded
    beyond the times given, lasts 1 / source_fps."""
    times = frame_times - frame_times[0]

    def time_of(index: int) -> float:
        if index < len(times):
            return float(times[index])
        return float(times[-1]) + (index - len(times) + 1) / source_fps

    next_output = 0
    for index, frame in enumerate(reader):
        # From the midpoint on the next frame is the nearer one. The margin keeps an exact tie with the later frame
        # when rounding puts the midpoint a hair late (times are stamped in µs at best, so it decides nothing else).
        boundary = (time_of(index) + time_of(index + 1)) / 2 - _TIE_MARGIN
        while next_output / fps < boundary:
            yield index, frame
            next_output += 1


def _choose_face(faces: list[FaceObservation], previous_centre: np.ndarray | None, face_index: int) -> FaceObservation:
    if previous_centre is None:
        return faces[min(face_index, len(faces) - 1)]
    distances = [float(np.linalg.norm(face.centre - previous_centre)) for face in faces]
    return faces[int(np.argmin(distances))]


def _smooth(
    values: np.ndarray, fps: float, config: OneEuroConfig | None, times: np.ndarray | None = None
) -> np.ndarray:
    return values if config is None else one_euro_filter(values, fps, config, times)


def analyze_video(
    path: str | Path,
    *,
    resolution: int = 256,
    smoothing: Smoothing = Smoothing(),
    face_index: int = 0,
    fps: float | None = None,
    max_frames: int | None = None,
    progress: ProgressCallback | None = None,
    landmarks: bool = True,
) -> VideoMotion:
    """Stream ``path`` through the face landmarker; see the module docstring. ``landmarks=False`` keeps only β,
    the pose and the valid mask per frame (``landmarks`` and ``transforms`` are then None)."""
    from export3d_cli.media.video_reader import VideoReader

    with VideoReader(path) as reader:
        source_fps = reader.info.fps
        total = reader.info.frame_count
        if total is not None and fps is not None:
            total = math.ceil(total * fps / source_fps)
        if total is not None and max_frames is not None:
            total = min(total, max_frames)
        frames = sampled_frames(iter(reader), source_fps, fps, reader.info.frame_times)
        tracked = _track(frames, fps or source_fps, face_index, max_frames, total, progress, str(path), landmarks)
        decode_error = reader.error
        times = None if fps is not None else _decoded_frame_times(reader.info.frame_times, len(tracked[3]))
    # Absolute: a motion file is used from other folders, where a relative path names another video (or none).
    return _finish(
        *tracked, fps or source_fps, str(Path(path).resolve()), resolution, smoothing, decode_error, frame_times=times
    )


def _decoded_frame_times(stamps: np.ndarray | None, frames: int) -> np.ndarray | None:
    """The times of the first ``frames`` decoded frames, from the packets' sorted presentation times; None when
    the stream has a constant rate or the stamps cannot be trusted (fewer than the frames decoded, or repeated
    times), so that the video falls back to its average rate rather than to wrong times."""
    if stamps is None or len(stamps) < frames:
        return None
    times = np.asarray(stamps[:frames], dtype=np.float64)
    return times if increasing_at_stream_resolution(times) else None


def analyze_frames(
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    resolution: int = 256,
    smoothing: Smoothing = Smoothing(),
    face_index: int = 0,
    name: str = "frames",
) -> VideoMotion:
    """``analyze_video`` for frames already in memory (uint8 RGB [H, W, 3] each), e.g. rendered ones."""
    tracked = _track(enumerate(frames), fps, face_index, None, None, None, name)
    return _finish(*tracked, fps, name, resolution, smoothing, None)


def _track(
    frames: Iterable[tuple[int, np.ndarray]],
    fps: float,
    face_index: int,
    max_frames: int | None,
    total: int | None,
    progress: ProgressCallback | None,
    name: str,
    keep_landmarks: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Detect and follow one face: (β [T, 52], rotation vectors [T, 3], landmarks [T, 478, 2] or None, valid,
    indices). Without ``keep_landmarks`` only ~0.5 KB per frame is kept instead of ~4 KB (plus the copies of
    ``_finish``): a driver of 6,552 frames held 291 MB for landmarks that animating never uses."""
    if face_index < 0:
        raise InputError(f"{name}: --face-index must be 0 or more, got {face_index}")
    expressions: list[np.ndarray] = []
    rotations: list[np.ndarray] = []
    landmarks: list[np.ndarray] = []
    valid: list[bool] = []
    frame_indices: list[int] = []
    chosen_centre: np.ndarray | None = None
    with FaceLandmarker("video") as landmarker:
        last_index = -1
        faces: list[FaceObservation] = []
        for output_index, (index, frame) in enumerate(frames):
            if max_frames is not None and output_index >= max_frames:
                break
            if index != last_index:  # a repeated frame (upsampling) reuses its detection
                faces = landmarker.detect(frame, timestamp_ms=round(output_index * 1000.0 / fps))
                last_index = index
            found = bool(faces) and (chosen_centre is not None or len(faces) > face_index)
            if found:
                face = _choose_face(faces, chosen_centre, face_index)
                chosen_centre = face.centre
                expressions.append(face.blendshapes)
                rotations.append(HeadPose.from_landmarks(face.landmarks).rotation_vector())
                if keep_landmarks:
                    landmarks.append(face.landmarks[:, :2].astype(np.float32))
            else:
                expressions.append(np.zeros(EXPRESSION_DIM, np.float32))
                rotations.append(np.zeros(3))
                if keep_landmarks:
                    landmarks.append(np.zeros((LANDMARK_COUNT, 2), np.float32))
            valid.append(found)
            frame_indices.append(index)
            if progress is not None:
                progress(len(valid), total)
    valid_mask = np.array(valid, dtype=bool)
    if not valid_mask.any():
        detail = f" (face index {face_index})" if face_index else ""
        raise InputError(f"{name}: no face found in any of its {len(valid)} frames{detail}")
    return (
        np.stack(expressions),
        np.stack(rotations),
        np.stack(landmarks) if keep_landmarks else None,
        valid_mask,
        np.array(frame_indices, dtype=np.int64),
    )


def _finish(
    expressions: np.ndarray,
    rotations: np.ndarray,
    landmarks: np.ndarray | None,
    valid: np.ndarray,
    frame_indices: np.ndarray,
    fps: float,
    source: str,
    resolution: int,
    smoothing: Smoothing,
    decode_error: str | None,
    frame_times: np.ndarray | None = None,
) -> VideoMotion:
    """Fill gaps, smooth (at the frames' own times when given), and derive cameras and crop transforms from the
    smoothed pose."""
    frames = valid.shape[0]
    expressions = np.clip(_smooth(fill_gaps(expressions, valid), fps, smoothing.expression, frame_times), 0.0, 1.0)
    rotations = _smooth(fill_gaps(rotations, valid), fps, smoothing.pose, frame_times)
    poses = [HeadPose.from_rotation_vector(vector) for vector in rotations]
    cameras = np.stack([pose.label() for pose in poses])  # [T, 25]
    transforms = None
    if landmarks is not None:
        landmarks = fill_gaps(landmarks.reshape(frames, -1), valid).reshape(frames, LANDMARK_COUNT, 2)
        transforms = _crop_transforms(landmarks, cameras, fps, resolution, smoothing, frame_times)
    return VideoMotion(
        expression=expressions.astype(np.float32),
        camera=cameras.astype(np.float32),
        valid=valid,
        landmarks=None if landmarks is None else landmarks.astype(np.float32),
        transforms=transforms,
        frame_indices=frame_indices,
        fps=float(fps),
        source=source,
        resolution=resolution,
        decode_error=decode_error,
        frame_times=frame_times,
    )


def _crop_transforms(
    landmarks: np.ndarray,
    cameras: np.ndarray,
    fps: float,
    resolution: int,
    smoothing: Smoothing,
    frame_times: np.ndarray | None = None,
) -> np.ndarray:
    """Smoothed image → R×R crop transforms [T, 2, 3] from landmarks [T, 478, 2] and cameras [T, 25]."""
    params = np.stack(
        [alignment_transform(landmarks[t], cameras[t], resolution).params() for t in range(len(landmarks))]
    )  # [T, 4]: log scale, angle, tx, ty
    params[:, 1] = np.unwrap(params[:, 1])
    params[:, 2:] /= resolution  # translation in crop units, so one filter setting fits every resolution
    params = _smooth(params, fps, smoothing.pose, frame_times)
    params[:, 2:] *= resolution
    return np.stack([SimilarityTransform.from_params(p).matrix for p in params])
