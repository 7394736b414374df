"""Score any generated video (ours or another tool's) against its source photo, driver and, optionally, ground truth.

Frames are paired by index over the shorter of the videos (no resampling: a
tool that keeps one output frame per driving frame lines up exactly), streamed,
and measured one by one (``FaceMeter``). CSIM compares each generated face with
the source photo's face (``csim_source``: is it that person?) and with the
driver's first face (``csim_driver``: how much of the driver's identity leaked
in). With a reference video (the ground truth of self-reenactment), PSNR, SSIM
and AKD are computed against it; a generated video of another size is resized
to the reference's first (area filter down, bicubic up).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from export3d_cli.errors import InputError
from export3d_cli.metrics.face_measurement import FaceMeter
from export3d_cli.metrics.identity import identity_similarity
from export3d_cli.metrics.image_quality import psnr, ssim, to_model_range
from export3d_cli.metrics.reenactment_scores import ReenactmentScores

ProgressCallback = Callable[[int, int | None], None]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _source_embedding(meter: FaceMeter, source: Path) -> np.ndarray:
    from export3d_cli.media.image_io import load_image

    measured = meter.measure(load_image(source), identity=True)
    if measured is None:
        raise InputError(f"{source}: no face found")
    return measured.embedding


def _length_and_decode_warnings(readers: list, scored: int) -> list[str]:
    """One line for each video that stopped decoding early or that has frames beyond the scored ones."""
    warnings = [f"{reader.info.path}: decoding stopped early: {reader.error}" for reader in readers if reader.error]
    for reader in readers:
        expected = reader.info.frame_count
        if expected is not None and expected > scored + 1:
            warnings.append(f"{reader.info.path}: about {expected} frames; only the first {scored} were scored")
    return warnings


def score_video(
    generated: str | Path,
    *,
    source: str | Path,
    driver: str | Path,
    reference: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict:
    """The metrics of ``ReenactmentScores.summary`` for one generated video (see the module docstring).

    ``warnings`` in the result lists videos that stopped decoding early or were longer than the scored pairs.
    """
    from export3d_cli.media.video_reader import VideoReader

    with ExitStack() as stack:
        meter = stack.enter_context(FaceMeter())
        source_embedding = _source_embedding(meter, Path(source))
        readers = [stack.enter_context(VideoReader(path)) for path in (generated, driver)]
        if reference is not None:
            readers.append(stack.enter_context(VideoReader(reference)))
        counts = [reader.info.frame_count for reader in readers]
        total = None if None in counts else min(counts)
        scores = ReenactmentScores()
        driver_embedding: np.ndarray | None = None
        generated_embeddings: list[np.ndarray] = []
        for frames in zip(*readers, strict=False):
            generated_frame, driving_frame = frames[0], frames[1]
            reference_frame = frames[2] if reference is not None else None
            if reference_frame is not None:
                generated_frame = _resize(generated_frame, *reference_frame.shape[:2])
            generated_face = meter.measure(generated_frame, identity=True, keypoints=reference is not None)
            driving_face = meter.measure(driving_frame, identity=driver_embedding is None)
            if driver_embedding is None and driving_face is not None:
                driver_embedding = driving_face.embedding
            reference_face = None
            if reference_frame is not None:
                reference_face = meter.measure(reference_frame, keypoints=True)
                pair = to_model_range(np.stack([generated_frame, reference_frame]))
                scores.add_image_quality(float(psnr(pair[:1], pair[1:])), float(ssim(pair[:1], pair[1:])))
            scores.add(
                generated_face,
                driving_face,
                source_embedding=source_embedding,
                reference=reference_face,
                with_reference=reference is not None,
            )
            if generated_face is not None:
                generated_embeddings.append(generated_face.embedding)
            if progress is not None:
                progress(scores.frames, total)
        warnings = _length_and_decode_warnings(readers, scores.frames)
    if scores.frames == 0:
        raise InputError(f"{generated}: no frames to score")
    if driver_embedding is not None:
        # The driver's first face may come after the first generated faces: compare all of them at the end.
        scores.csim_driver = [identity_similarity(e, driver_embedding) for e in generated_embeddings]
    return {**scores.summary(), "warnings": warnings}
