"""``export3d extract DRIVING -o motion.npz``: analyse a driving video once, reuse it for many sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import FaceIndexOption, JsonOption, QuietOption, SmoothingOption
from export3d_cli.cli.progress import progress, warn


def extract(
    driving: Annotated[Path, typer.Argument(help="Driving video (any format ffmpeg reads).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Motion file to write (.npz).")],
    smoothing: SmoothingOption = 1.0,
    face_index: FaceIndexOption = 0,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Analyse at most this many frames.")
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Extract per-frame expression (52 blendshapes) and EG3D camera from a driving video."""
    from export3d_cli.atomic import prepare_output_file
    from export3d_cli.errors import UsageError
    from export3d_cli.face.motion_file import save_motion
    from export3d_cli.face.video_analysis import Smoothing, analyze_video

    if output.suffix.lower() != ".npz":
        raise UsageError(f"{output}: a motion file must end in .npz")
    prepare_output_file(output, inputs=[driving])
    with progress(f"Analysing {driving.name}", quiet=quiet) as bar:
        result = analyze_video(
            driving,
            smoothing=Smoothing(smoothing),
            face_index=face_index,
            max_frames=max_frames,
            progress=bar.update,
            landmarks=False,  # a motion file keeps β and p only
        )
    save_motion(output, result.motion())
    if result.missing and not quiet:
        warn(f"{driving}: no face in {result.missing} of {result.frames} frames; filled by interpolation")
    if result.decode_error and not quiet:
        warn(f"{driving}: decoding stopped early after {result.frames} frames: {result.decode_error}")
    if as_json:
        summary = {
            "output": str(output),
            "frames": result.frames,
            "valid_frames": result.frames - result.missing,
            "missing_frames": result.missing,
            "fps": result.fps,
            "variable_frame_rate": result.frame_times is not None,
            "source": str(driving),
            "decode_error": result.decode_error,
        }
        typer.echo(json.dumps(summary))
    else:
        typer.echo(str(output))
