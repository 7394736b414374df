"""MediaPipe Face Landmarker (Tasks API) behind a small typed interface.

One detection gives, per face: 478 landmarks (468 mesh + 10 iris) with relative
depth, and the 52 blendshape scores β. Image mode analyses each picture on its own; video
mode tracks faces between frames (it needs increasing timestamps).

Very large pictures are analysed at a reduced size (the detector works on a
128² input and the landmark model on a 256² face crop anyway) and the
landmarks are scaled back; very small ones are enlarged so the detector's
minimum face size is reached.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from export3d_cli.face.blendshapes import EXPRESSION_DIM
from export3d_cli.face.landmarker_model import face_landmarker_path
from export3d_cli.face.mediapipe_import import import_mediapipe
from export3d_cli.face.offline import run_offline
from export3d_cli.signals import interruptions_held

LANDMARK_COUNT = 478
ANALYSIS_MAX_SIDE = 1920
ANALYSIS_MIN_SIDE = 256
MAX_TRACKED_FACES = 4


@dataclass(frozen=True)
class FaceObservation:
    """One detected face.

    Shapes: landmarks [478, 3] — x, y in pixels of the image (continuous, (0, 0)
    at its top-left corner) and MediaPipe's relative depth in the same units as x
    (larger = further away); blendshapes [52] float32.
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Landmark bounding box (x0, y0, x1, y1) in pixels."""
        x, y = self.landmarks[:, 0], self.landmarks[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)

    @property
    def centre(self) -> np.ndarray:
        return self.landmarks[:, :2].mean(axis=0)


def _analysis_scale(height: int, width: int) -> float:
    longest = max(height, width)
    if longest > ANALYSIS_MAX_SIDE:
        return ANALYSIS_MAX_SIDE / longest
    if longest < ANALYSIS_MIN_SIDE:
        return ANALYSIS_MIN_SIDE / longest
    return 1.0


class FaceLandmarker:
    """Context manager around MediaPipe's FaceLandmarker; close it (MediaPipe crashes at exit otherwise)."""

    def __init__(self, mode: Literal["image", "video"] = "image", max_faces: int = MAX_TRACKED_FACES) -> None:
        # MediaPipe's C++ logging goes to stderr before the first detection; keep the CLI's stderr clean.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import_mediapipe()  # first, so that its plotting helpers stay unloaded
        from mediapipe.tasks.python import BaseOptions, vision

        running_mode = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(face_landmarker_path())),
            running_mode=running_mode,
            num_faces=max_faces,
            output_face_blendshapes=True,
        )
        self.mode = mode
        # MediaPipe's wheel uploads usage metrics from the threads this call starts; run_offline denies them sockets.
        with _quiet_stderr():
            self._landmarker = run_offline(lambda: vision.FaceLandmarker.create_from_options(options))
        self._last_timestamp_ms = -1
        self._warmed_up = False

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release MediaPipe's graph; idempotent. A Ctrl-C or SIGTERM meanwhile waits until it is done: cut short, the
        close would be retried by MediaPipe's own ``__del__`` at interpreter exit, which then prints a traceback."""
        if self._landmarker is None:
            return
        with interruptions_held():
            self._landmarker.close()
            self._landmarker = None

    def __del__(self) -> None:
        # Never closed (kept in a global, or in a reference cycle collected at exit): at interpreter exit MediaPipe's
        # dispatcher is half torn down and closing fails. The process is ending, so the C graph goes with it; clearing
        # MediaPipe's (private) handle keeps its own __del__ from retrying and printing the traceback.
        landmarker = getattr(self, "_landmarker", None)  # absent when __init__ failed
        if landmarker is None:
            return
        self._landmarker = None
        try:
            landmarker.close()
        except Exception:
            landmarker._handle = None

    def detect(self, image: np.ndarray, timestamp_ms: int | None = None) -> list[FaceObservation]:
        """Faces in ``image`` (uint8 RGB [H, W, 3]), largest first.

        In video mode pass the frame's timestamp; it must increase from call to call.
        """
        import cv2
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("FaceLandmarker is closed")
        height, width = image.shape[:2]
        scale = _analysis_scale(height, width)
        analysed = image
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            analysed = cv2.resize(image, size, interpolation=interpolation)
        analysed = np.ascontiguousarray(analysed)
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=analysed)
        # Only the first call prints (delegate notices); later calls must not touch fd 2 under a live progress bar.
        quiet = _quiet_stderr() if not self._warmed_up else contextlib.nullcontext()
        self._warmed_up = True
        with quiet:
            if self.mode == "video":
                stamp = self._last_timestamp_ms + 1 if timestamp_ms is None else int(timestamp_ms)
                stamp = max(stamp, self._last_timestamp_ms + 1)
                self._last_timestamp_ms = stamp
                result = self._landmarker.detect_for_video(mp_image, stamp)
            else:
                result = self._landmarker.detect(mp_image)
        faces = []
        for index, points in enumerate(result.face_landmarks):
            # Normalised to the analysed image, which is a resize of the original: scale by the original size.
            landmarks = np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64) * [width, height, width]
            scores = np.zeros(EXPRESSION_DIM, dtype=np.float32)
            if index < len(result.face_blendshapes):
                for category in result.face_blendshapes[index]:
                    scores[category.index] = category.score
            faces.append(FaceObservation(landmarks=landmarks, blendshapes=scores))
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C++ log lines (TFLite delegate notices) written straight to file descriptor 2."""
    if os.environ.get("EXPORT3D_DEBUG"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
