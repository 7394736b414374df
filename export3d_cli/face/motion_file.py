"""Motion files: the analysed motion of a driving video, reusable across many sources.

``export3d extract DRIVING -o motion.npz`` writes one; ``export3d animate`` accepts
it in place of the video, so a batch of sources does not re-analyse the driver.
Format (a NumPy ``.npz``, read with ``allow_pickle=False``):

======================  =====================  ==========================================
key                     type                   meaning
======================  =====================  ==========================================
``version``             int64 scalar           format version (``MOTION_FORMAT_VERSION``)
``expression``          float32 [T, 52]        β per frame (smoothed, gaps filled)
``camera``              float32 [T, 25]        EG3D camera label per frame
``valid``               bool [T]               the face was actually found in that frame
``fps``                 float64 scalar         frame rate of the driving video
``source``              str scalar             path of the driving video (its audio track)
``expression_names``    str [52]               blendshape names, in order
``frame_times``         float64 [T], optional  each frame's own time in seconds, for a variable-frame-rate
                                               driver (absent for a constant rate: frame k is at k / fps)
======================  =====================  ==========================================

Readers accept files of this version or older and ignore unknown keys. Before any array is loaded, the
arrays' headers are checked against :data:`MAX_MOTION_FRAMES` (see :func:`export3d_cli.input_files.check_npz_sizes`).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_cli.atomic import atomic_path
from export3d_cli.camera_conventions import LABEL_DIM
from export3d_cli.errors import InputError
from export3d_cli.face.blendshapes import BLENDSHAPE_NAMES, EXPRESSION_DIM
from export3d_cli.input_files import check_npz_sizes, require_regular_file
from export3d_cli.media.matroska_stream import increasing_at_stream_resolution

MOTION_FORMAT_VERSION = 1
# A frame rate outside this range cannot be written as a video (and 1e-300 or 1e300 overflow the timing maths).
MIN_FPS, MAX_FPS = 0.01, 1000.0
REQUIRED_KEYS = ("version", "expression", "camera", "valid", "fps", "source")
# 11 hours at 25 fps, 4.6 hours at 60 fps: longer than any driver anyone renders (animate runs far slower than
# real time), and its arrays still load in ~320 MB. A file declaring more is hostile or broken.
MAX_MOTION_FRAMES = 1_000_000
# The most bytes each array may declare: [T, 52] and [T, 25] float32 (the documented dtype; a float64 file gets
# half the frames) and [T] flags at up to 8 bytes each, at T = MAX_MOTION_FRAMES; the scalars and the source path
# get room for any real value. Other keys are never loaded, so only the archive-wide cap applies to them.
_MAX_BYTES = {
    "expression": MAX_MOTION_FRAMES * EXPRESSION_DIM * 4,
    "camera": MAX_MOTION_FRAMES * LABEL_DIM * 4,
    "valid": MAX_MOTION_FRAMES * 8,
    "frame_times": MAX_MOTION_FRAMES * 8,
    "version": 64,
    "fps": 64,
    "source": 4 * 65_536,  # a path of up to 64 Ki characters, stored as UCS-4
}


@dataclass(frozen=True)
class Motion:
    """Per-frame driving signals. Shapes: expression [T, 52], camera [T, 25], valid [T]; ``frame_times`` [T]
    seconds (strictly increasing) for a variable-frame-rate driver, None for a constant rate (frame k at k / fps)."""

    expression: np.ndarray
    camera: np.ndarray
    valid: np.ndarray
    fps: float
    source: str
    frame_times: np.ndarray | None = None

    def __post_init__(self) -> None:
        frames = self.valid.shape[0]
        if self.expression.shape != (frames, EXPRESSION_DIM) or self.camera.shape != (frames, LABEL_DIM):
            raise ValueError(
                f"motion shapes disagree: expression {self.expression.shape}, camera {self.camera.shape}, "
                f"valid {self.valid.shape}"
            )
        if self.frame_times is not None and self.frame_times.shape != (frames,):
            raise ValueError(f"frame_times has shape {self.frame_times.shape}, expected ({frames},)")

    @property
    def frames(self) -> int:
        return int(self.valid.shape[0])

    def first(self, frames: int) -> Motion:
        """The first ``frames`` frames only."""
        times = None if self.frame_times is None else self.frame_times[:frames]
        return Motion(self.expression[:frames], self.camera[:frames], self.valid[:frames], self.fps, self.source, times)


def save_motion(path: str | Path, motion: Motion) -> Path:
    """Write ``motion`` to ``path`` atomically (a failure never leaves a partial file there)."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        # A file object, not a name: np.savez would append ".npz" to the temporary name.
        np.savez(
            handle,
            version=np.int64(MOTION_FORMAT_VERSION),
            expression=motion.expression.astype(np.float32),
            camera=motion.camera.astype(np.float32),
            valid=motion.valid.astype(bool),
            fps=np.float64(motion.fps),
            source=np.array(motion.source),
            expression_names=np.array(BLENDSHAPE_NAMES),
            **({} if motion.frame_times is None else {"frame_times": motion.frame_times.astype(np.float64)}),
        )
    return path


def is_motion_file(path: str | Path) -> bool:
    """True when ``path`` looks like a motion file (an .npz holding our keys), without reading arrays.

    Only a regular file is probed: zipfile seeks for the end of an archive, which a device never has.
    """
    try:
        require_regular_file(path)
    except InputError:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
    except (OSError, zipfile.BadZipFile):
        return False
    return set(REQUIRED_KEYS) <= names


def load_motion(path: str | Path) -> Motion:
    """Read and validate a motion file; every problem is an InputError naming the file."""
    path = require_regular_file(path)
    try:
        check_npz_sizes(path, _MAX_BYTES, why=f"a motion file holds at most {MAX_MOTION_FRAMES:,} frames")
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in REQUIRED_KEYS if key not in data.files]
            if missing:
                raise InputError(f"{path}: not an export3d motion file (missing {', '.join(missing)})")
            version = int(data["version"])
            if version > MOTION_FORMAT_VERSION:
                raise InputError(
                    f"{path}: motion file version {version} is newer than this export3d reads "
                    f"({MOTION_FORMAT_VERSION}); upgrade export3d"
                )
            expression = np.asarray(data["expression"], dtype=np.float32)
            camera = np.asarray(data["camera"], dtype=np.float32)
            valid = np.asarray(data["valid"]).astype(bool)
            fps = float(data["fps"])
            source = str(data["source"])
            frame_times = np.asarray(data["frame_times"], dtype=np.float64) if "frame_times" in data.files else None
    except InputError:
        raise
    except (
        OSError,
        ValueError,
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        KeyError,
        TypeError,
        AttributeError,
    ) as error:
        raise InputError(f"{path}: not a readable motion file ({error})") from error
    frames = valid.shape[0] if valid.ndim == 1 else -1
    if frames < 1 or expression.shape != (frames, EXPRESSION_DIM) or camera.shape != (frames, LABEL_DIM):
        raise InputError(
            f"{path}: inconsistent motion file: expression {expression.shape}, camera {camera.shape}, "
            f"valid {valid.shape} (expected [T, {EXPRESSION_DIM}], [T, {LABEL_DIM}], [T] with T >= 1)"
        )
    if not (np.isfinite(expression).all() and np.isfinite(camera).all()):
        raise InputError(f"{path}: motion file holds non-finite values")
    if not MIN_FPS <= fps <= MAX_FPS:  # also refuses NaN
        raise InputError(f"{path}: motion file fps {fps} is outside {MIN_FPS:g}-{MAX_FPS:g}")
    if frame_times is not None and not (
        frame_times.shape == (frames,)
        and np.isfinite(frame_times).all()
        and increasing_at_stream_resolution(frame_times)
    ):
        raise InputError(
            f"{path}: motion file frame_times must be {frames} finite seconds, each at least 1 µs after the last"
        )
    return Motion(expression=expression, camera=camera, valid=valid, fps=fps, source=source, frame_times=frame_times)
