"""``export3d animate SOURCE... DRIVING [-o OUT]``: the source photo(s) take the driver's expression and pose."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

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
    SmoothingOption,
    WeightsOption,
)
from export3d_cli.cli.personalizing import check_personalization_options
from export3d_cli.cli.progress import progress, warn


def animate(
    paths: Annotated[
        list[Path], typer.Argument(help="SOURCE... DRIVING: one or more portrait photos, then a video or motion file.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Output .mp4 (one source) or folder (several); default SOURCE__DRIVING.mp4"
        ),
    ] = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    batch_size: BatchSizeOption = 8,
    pose: Annotated[
        str,
        typer.Option(
            "--pose",
            help="driving (follow the driver's head), relative (the photo's head turned as the driver's turns), "
            "source, frontal, or auto: relative for a personalised model, else driving.",
        ),
    ] = "auto",
    expression: Annotated[
        str,
        typer.Option(
            "--expression",
            help="absolute (driver's β), relative (source β + driver's change), or auto: relative for a "
            "personalised model, else absolute.",
        ),
    ] = "auto",
    paste_back: Annotated[
        bool, typer.Option("--paste-back", help="Composite the face back into the full source photo.")
    ] = False,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Write source | driver | result.")] = False,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Do not copy the driver's audio.")] = False,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="Use at most N driving frames.")] = None,
    smoothing: SmoothingOption = 1.0,
    face_index: FaceIndexOption = 0,
    continue_on_error: Annotated[
        bool, typer.Option("--continue-on-error", help="With several sources, go on after a failed one.")
    ] = False,
    personalized: PersonalizedOption = None,
    no_personalize: NoPersonalizeOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Animate portrait photo(s) with a driving video (or a motion file from `export3d extract`)."""
    from export3d_cli.atomic import prepare_output_file
    from export3d_cli.errors import EXIT_FAILURE, EXIT_USAGE, Export3DError, InputError, UsageError
    from export3d_cli.face.analysis import analyze_image
    from export3d_cli.face.landmarker import FaceLandmarker
    from export3d_cli.media.image_io import check_image, load_image
    from export3d_cli.pipeline.animate_job import ANALYSIS_RESOLUTION, AnimateOptions, animate_source, output_name
    from export3d_cli.pipeline.animator import Animator
    from export3d_cli.pipeline.driving import AUTO, EXPRESSION_MODES, POSE_MODES, load_driving

    if len(paths) < 2:
        raise UsageError("give at least one SOURCE photo and then the DRIVING video or motion file")
    if pose not in (*POSE_MODES, AUTO):
        raise UsageError(f"--pose must be one of {', '.join((*POSE_MODES, AUTO))}, got {pose!r}")
    if expression not in (*EXPRESSION_MODES, AUTO):
        raise UsageError(f"--expression must be one of {', '.join((*EXPRESSION_MODES, AUTO))}, got {expression!r}")
    *sources, driving_path = paths
    for source in sources:
        if not source.exists():
            raise InputError(f"{source}: no such file")
    if not driving_path.exists():
        raise InputError(f"{driving_path}: no such file")
    if output is not None and output.suffix and output.suffix.lower() != ".mp4" and not output.is_dir():
        raise UsageError(f"{output}: the output must be an .mp4 file (or a folder for several sources)")
    if output is not None and output.exists() and not output.is_dir():
        if not output.is_file():
            raise UsageError(
                f"{output}: is not a regular file (a device, pipe or socket); give an .mp4 path or a folder"
            )
        if output.suffix.lower() != ".mp4":
            raise UsageError(f"{output}: is a file without the .mp4 suffix; give an .mp4 path or a folder")
    single = len(sources) == 1 and (output is None or output.suffix.lower() == ".mp4")
    if single:
        target = output or Path(output_name(sources[0], driving_path))
        if target.suffix.lower() != ".mp4":
            raise UsageError(f"{target}: the output must end in .mp4")
        prepare_output_file(target, inputs=paths)
        targets = [target]
    else:
        folder = output or Path(".")
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: several sources need an output folder, and this is a file")
        targets = [folder / output_name(source, driving_path) for source in sources]
        if len(set(targets)) != len(targets):
            raise UsageError("two sources share a file name; their outputs would overwrite each other")
        for target in targets:
            prepare_output_file(target, inputs=paths)
    if single or not continue_on_error:
        # Before minutes of driver analysis, not after: without --continue-on-error a bad photo would stop the
        # batch anyway, so say so now.
        for source in sources:
            check_image(source)
    check_personalization_options(personalized, no_personalize)
    if personalized is not None and len(sources) > 1 and not personalized.is_dir():
        raise UsageError(f"{personalized}: with several sources --personalized must be the personalize folder")
    options = AnimateOptions(pose, expression, paste_back, side_by_side, audio=not no_audio)
    with progress("Loading the model", quiet=quiet):
        animator = Animator.from_weights(weights, device=device, precision=precision, batch_size=batch_size)

    results, failures, errors = [], [], []
    with progress("Analysing the driver", quiet=quiet) as bar:
        driving = load_driving(driving_path, smoothing=smoothing, max_frames=max_frames, progress=bar.update)
        if driving.video_problem and not no_audio and not quiet:
            warn(f"{driving_path}: {driving.video_problem}; the output has no audio")
        if driving.decode_error and not quiet:
            warn(f"{driving_path}: decoding stopped early after {driving.frames} frames: {driving.decode_error}")
        if driving.missing and not quiet:
            warn(f"{driving_path}: no face in {driving.missing} of {driving.frames} frames; filled by interpolation")
        with FaceLandmarker("image") as landmarker:
            for number, (source, target) in enumerate(zip(sources, targets, strict=True), start=1):
                label = f"[{number}/{len(sources)}] {source.name}"
                bar.stage(f"{label}: finding the face")
                try:
                    image = load_image(source)
                    analysis = analyze_image(
                        image,
                        resolution=ANALYSIS_RESOLUTION,
                        face_index=face_index,
                        landmarker=landmarker,
                        name=str(source),
                    )
                    # After the face is found: a photo without one must not wait for minutes of tuning.
                    animator.prepare_photo(
                        source,
                        personalized=personalized,
                        personalize=not no_personalize,
                        face_index=face_index,
                        on_start=lambda _, total, __, label=label: bar.stage(f"{label}: personalising", total),
                        on_step=lambda step, total, _: bar.update(step, total),
                    )
                    results.append(
                        animate_source(
                            animator,
                            source,
                            image,
                            analysis,
                            driving,
                            target,
                            options,
                            on_frame=bar.update,
                            on_stage=lambda what, total, label=label: bar.stage(f"{label}: {what}", total),
                        )
                    )
                except Export3DError as error:
                    failures.append({"source": str(source), "error": error.message, "exit_code": error.exit_code})
                    errors.append(error)
                    if not continue_on_error:
                        break
    if as_json:
        typer.echo(json.dumps({"outputs": [result.__dict__ for result in results], "failed": failures}))
    else:
        for result in results:
            typer.echo(result.output)
    if failures:
        if len(sources) == 1 and not as_json:
            raise errors[0]
        for failure in failures:
            print(f"Error: {failure['error']}", file=sys.stderr)
        skipped = len(sources) - len(results) - len(failures)
        summary = f"{len(failures)} of {len(sources)} sources failed" + (
            f", {skipped} not attempted" if skipped else ""
        )
        print(summary, file=sys.stderr)
        codes = {failure["exit_code"] for failure in failures}
        raise typer.Exit(EXIT_USAGE if codes == {EXIT_USAGE} else EXIT_FAILURE)
