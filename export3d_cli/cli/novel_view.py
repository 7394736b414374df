"""``export3d novel-view SOURCE --yaw A[:B] [--pitch C[:D]] -o OUT``: the source seen from other cameras.

A single angle writes an image; a range writes an orbit video (.mp4) or a grid
of views (.png/.jpg). Angles are degrees of EG3D's look-at sampler (yaw > 0
puts the camera on the subject's left, pitch > 0 below the face).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from export3d_cli.cli.options import (
    BatchSizeOption,
    DeviceOption,
    FaceIndexOption,
    JsonOption,
    NoPersonalizeOption,
    PersonalizedOption,
    PrecisionOption,
    QuietOption,
    WeightsOption,
)
from export3d_cli.cli.personalizing import check_personalization_options, choose_model_for_photo
from export3d_cli.cli.progress import progress


def parse_range(text: str, name: str, limit: float) -> tuple[float, float]:
    """'A' or 'A:B' (degrees) → (A, B), checked against ±limit."""
    from export3d_cli.errors import UsageError

    parts = text.split(":")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise UsageError(f"{name} takes numbers as A or A:B, got {text!r}") from None
    if len(values) not in (1, 2) or not all(np.isfinite(values)):
        raise UsageError(f"{name} takes numbers as A or A:B, got {text!r}")
    if any(abs(v) > limit for v in values):
        raise UsageError(f"{name} must stay within ±{limit:g}, got {text!r}")
    return values[0], values[-1]


def novel_view(
    source: Annotated[Path, typer.Argument(help="Portrait photo.")],
    yaw: Annotated[str, typer.Option("--yaw", help="Degrees: A for one view, A:B for a sweep.")] = "0",
    pitch: Annotated[str, typer.Option("--pitch", help="Degrees: C or C:D.")] = "0",
    frames: Annotated[int, typer.Option("--frames", min=2, help="Views in a sweep.")] = 48,
    expression_from: Annotated[
        Path | None,
        typer.Option("--expression-from", help="Take β from another photo or from a motion file (per frame)."),
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Image (.png/.jpg) or video (.mp4).")] = Path(
        "novel-view.png"
    ),
    fps: Annotated[float, typer.Option("--fps", min=1.0, max=120.0, help="Frame rate of an orbit video.")] = 25.0,
    weights: WeightsOption = None,
    personalized: PersonalizedOption = None,
    no_personalize: NoPersonalizeOption = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    batch_size: BatchSizeOption = 8,
    face_index: FaceIndexOption = 0,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Render the source from other camera angles (an image, an orbit video, or a grid)."""
    from export3d_cli.atomic import prepare_output_file
    from export3d_cli.errors import UsageError
    from export3d_cli.face.analysis import analyze_image
    from export3d_cli.face.head_pose import look_at_pose
    from export3d_cli.face.motion_file import is_motion_file, load_motion
    from export3d_cli.pipeline.animator import Animator
    from export3d_cli.pipeline.frame_output import IMAGE_OUTPUTS, VIDEO_OUTPUTS, write_views

    yaws = parse_range(yaw, "--yaw", 90.0)
    pitches = parse_range(pitch, "--pitch", 60.0)
    suffix = output.suffix.lower()
    sweep = yaws[0] != yaws[1] or pitches[0] != pitches[1]
    if suffix not in (*IMAGE_OUTPUTS, *VIDEO_OUTPUTS):
        raise UsageError(f"{output}: write .png, .jpg, .webp, .bmp or .mp4")
    if suffix == ".mp4" and not sweep:
        raise UsageError("a single angle makes one image; give a range like --yaw -30:30 for a video")
    prepare_output_file(output, inputs=[source] + ([expression_from] if expression_from else []))
    count = frames if sweep else 1
    check_personalization_options(personalized, no_personalize)
    animator = Animator.from_weights(weights, device=device, precision=precision, batch_size=batch_size)
    analysis = analyze_image(source, face_index=face_index)
    if expression_from is None:
        betas = np.repeat(analysis.expression[None], count, axis=0)
    elif is_motion_file(expression_from):
        motion = load_motion(expression_from)
        betas = motion.expression[np.arange(count) % motion.frames]
    else:
        betas = np.repeat(analyze_image(expression_from).expression[None], count, axis=0)
    angles = np.stack([np.linspace(*yaws, count), np.linspace(*pitches, count)], axis=1)
    cameras = np.stack([look_at_pose(float(y), float(p)).label() for y, p in angles])
    # After every input is read: a bad --expression-from must not wait for minutes of personalisation.
    choose_model_for_photo(animator, source, personalized, no_personalize, face_index=face_index, quiet=quiet)
    encoded = animator.encode(analysis.crop, analysis.expression)
    with progress("Rendering views", quiet=quiet) as bar:
        frames_out = animator.render(encoded, betas, cameras)
        write_views(output, frames_out, count=count, size=animator.resolution, fps=fps, on_frame=bar.update)
    if as_json:
        typer.echo(json.dumps({"output": str(output), "views": count, "yaw": list(yaws), "pitch": list(pitches)}))
    else:
        typer.echo(str(output))
