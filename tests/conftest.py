"""Shared fixtures: small driving videos made from the real example photo.

The videos are generated once per session (well under a second) with the ffmpeg binary imageio-ffmpeg ships, so
face tests run on a real face whose motion is known exactly: the photo turns in the image plane by
``angle(t) = 10·sin(2πt/40)`` degrees, and a few frames are flat grey (no face at all).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

EXAMPLE_PHOTO = Path(__file__).resolve().parent.parent / "examples" / "source.png"
VIDEO_SIZE = 256
VIDEO_FPS = 25.0
VIDEO_FRAMES = 40
FACELESS_FRAMES = (15, 16, 17, 18)
FACELESS_VIDEO_FRAMES = 10
GREY = 128


@dataclass(frozen=True)
class DrivingVideo:
    """A generated driving video and what is known about its content.

    ``angles`` [T] are the in-plane rotations (degrees, anticlockwise on screen as cv2 counts them) applied to
    the photo in each frame; ``faceless_frames`` are the indices of the flat grey frames.
    """

    path: Path
    angles: np.ndarray
    faceless_frames: tuple[int, ...]
    fps: float = VIDEO_FPS
    size: int = VIDEO_SIZE

    @property
    def frames(self) -> int:
        return int(self.angles.shape[0])

    @property
    def valid_mask(self) -> np.ndarray:
        """[T] bool: True where the frame shows the face."""
        mask = np.ones(self.frames, dtype=bool)
        mask[list(self.faceless_frames)] = False
        return mask


def rotation_angles(frames: int = VIDEO_FRAMES) -> np.ndarray:
    """angle(t) = 10·sin(2πt/40) degrees, [T] float64."""
    return np.array([10.0 * math.sin(2.0 * math.pi * t / 40.0) for t in range(frames)])


def grey_frame(size: int = VIDEO_SIZE) -> np.ndarray:
    return np.full((size, size, 3), GREY, dtype=np.uint8)


def face_frames(angles: np.ndarray, faceless: Iterable[int], size: int = VIDEO_SIZE) -> list[np.ndarray]:
    """The example photo scaled to ``size`` and rotated by ``angles[t]`` about the centre; grey where ``faceless``."""
    photo = np.asarray(Image.open(EXAMPLE_PHOTO).convert("RGB"))
    small = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    faceless = set(faceless)
    frames = []
    for t, angle in enumerate(angles):
        if t in faceless:
            frames.append(grey_frame(size))
            continue
        matrix = cv2.getRotationMatrix2D(centre, float(angle), 1.0)
        frames.append(
            cv2.warpAffine(small, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        )
    return frames


def write_video(path: Path, frames: list[np.ndarray], *, fps: float = VIDEO_FPS, lossless: bool = False) -> Path:
    """Encode RGB frames: H.264 in .mp4 by default, or ffv1 (``lossless``, use .mkv: a cut one stays readable)."""
    height, width = frames[0].shape[:2]
    codec = "ffv1" if lossless else "libx264"
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec=codec,
        quality=8,
        macro_block_size=16,
        pix_fmt_out="yuv420p",
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def truncate_copy(source: Path, destination: Path, fraction: float = 0.6) -> Path:
    """Copy the first ``fraction`` of ``source``'s bytes to ``destination`` (a download cut short).

    Use an .mkv: an .mp4 keeps its index (moov atom) at the end, so a cut one does not open at all.
    """
    data = Path(source).read_bytes()
    Path(destination).write_bytes(data[: int(len(data) * fraction)])
    return Path(destination)


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def driving_video(video_dir: Path) -> DrivingVideo:
    """40 frames at 25 fps, 256×256: the example face turning in-plane by 10·sin(2πt/40)°, frames 15–18 grey."""
    angles = rotation_angles()
    path = write_video(video_dir / "driving.mp4", face_frames(angles, FACELESS_FRAMES))
    return DrivingVideo(path=path, angles=angles, faceless_frames=FACELESS_FRAMES)


@pytest.fixture(scope="session")
def driving_video_mkv(video_dir: Path) -> DrivingVideo:
    """The same frames as ``driving_video``, lossless ffv1 in Matroska (for truncation tests)."""
    angles = rotation_angles()
    path = write_video(video_dir / "driving.mkv", face_frames(angles, FACELESS_FRAMES), lossless=True)
    return DrivingVideo(path=path, angles=angles, faceless_frames=FACELESS_FRAMES)


@pytest.fixture(scope="session")
def faceless_video(video_dir: Path) -> Path:
    """10 flat grey frames at 25 fps: a readable video without any face."""
    return write_video(video_dir / "faceless.mp4", [grey_frame()] * FACELESS_VIDEO_FRAMES)


@pytest.fixture(scope="session")
def truncated_video(driving_video_mkv: DrivingVideo, video_dir: Path) -> Path:
    """``driving_video_mkv`` cut at 60% of its bytes: the first frames decode, then the stream ends early."""
    return truncate_copy(driving_video_mkv.path, video_dir / "truncated.mkv")


@pytest.fixture
def truncated_copy() -> Callable[..., Path]:
    """``truncated_copy(source, destination, fraction=0.6)``: see :func:`truncate_copy`."""
    return truncate_copy
