"""One animation job: a source photo driven by analysed driving signals, streamed into a video file.

Decode → render → encode is a stream: frames are rendered in batches and piped
to the encoder as they come, so memory does not grow with the driving video's
length. The output appears under its name only when complete (``VideoWriter``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_cli.errors import InputError
from export3d_cli.face.analysis import FaceAnalysis
from export3d_cli.pipeline.animator import Animator
from export3d_cli.pipeline.compose import PasteBack, side_by_side
from export3d_cli.pipeline.driving import Driving, drive, resolve_modes

ANALYSIS_RESOLUTION = 256  # crop size used for the source's alignment (and paste-back)
FrameCallback = Callable[[int, int], None]
StageCallback = Callable[[str, "int | None"], None]  # (what, total): a long stage starts


@dataclass(frozen=True)
class AnimateOptions:
    pose: str = "auto"  # see ``driving.resolve_modes``
    expression: str = "auto"
    paste_back: bool = False
    side_by_side: bool = False
    audio: bool = True


@dataclass(frozen=True)
class JobResult:
    source: str
    output: str
    frames: int
    missing_frames: int
    fps: float
    audio: bool


def output_name(source: Path, driving: Path) -> str:
    """Predictable batch output name: ``{source}__{driving}.mp4``."""
    return f"{source.stem}__{driving.stem}.mp4"


def _driver_frames(driving: Driving) -> Iterator[np.ndarray | None]:
    """The driver's frames for side-by-side panels (None forever when only a motion file is known)."""
    if driving.video is None:
        while True:
            yield None
    from export3d_cli.media.video_reader import VideoReader

    with VideoReader(driving.video) as reader:
        yield from reader
    while True:
        yield None


def animate_source(
    animator: Animator,
    source_path: Path,
    source_image: np.ndarray,
    analysis: FaceAnalysis,
    driving: Driving,
    output: Path,
    options: AnimateOptions,
    on_frame: FrameCallback | None = None,
    on_stage: StageCallback | None = None,
) -> JobResult:
    """Render one source through every driving frame into ``output`` (an .mp4, written atomically)."""
    from export3d_cli.media.video_writer import VideoWriter

    if options.side_by_side and driving.video is None:
        raise InputError(
            f"{driving.path}: --side-by-side needs the driving video, but {driving.video_problem or 'it is gone'}"
        )
    encoded = animator.encode(analysis.crop, analysis.expression)
    pose, expression = resolve_modes(options.pose, options.expression, animator.model.personal is not None)
    betas, cameras = drive(driving, analysis.expression, analysis.camera, pose, expression)
    compose_paste = (
        PasteBack(source_image, analysis.transform, ANALYSIS_RESOLUTION, analysis.crop_landmarks)
        if options.paste_back
        else None
    )
    resolution = animator.resolution
    if compose_paste is not None:
        height, width = source_image.shape[:2]
    else:
        height, width = resolution, resolution
    if options.side_by_side:
        width = 3 * width if compose_paste is None else width + 2 * height
    audio = driving.video if options.audio and driving.video is not None else None
    total = driving.frames
    driver_frames = _driver_frames(driving) if options.side_by_side else None
    source_panel = analysis.crop
    with VideoWriter(
        output,
        fps=driving.motion.fps,
        width=width,
        height=height,
        audio_from=audio,
        frame_times=driving.motion.frame_times,
    ) as writer:
        if on_stage is not None:
            on_stage("rendering", total)
        for index, frame in enumerate(animator.render(encoded, betas, cameras)):
            if compose_paste is not None:
                frame = compose_paste(frame)
            if driver_frames is not None:
                frame = side_by_side(
                    source_panel if compose_paste is None else source_image, next(driver_frames), frame
                )
            writer.write(frame)
            if on_frame is not None:
                on_frame(index + 1, total)
        if driver_frames is not None:
            driver_frames.close()
        if on_stage is not None:
            on_stage("finishing the video" + (" and adding the audio" if audio is not None else ""), None)
    return JobResult(
        source=str(source_path),
        output=str(output),
        frames=total,
        missing_frames=driving.missing,
        fps=driving.motion.fps,
        audio=writer.audio_source is not None,
    )
