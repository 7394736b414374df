"""``export3d preprocess VIDEOS... -o DATASET``: talking-head videos → a training/evaluation dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import JsonOption, QuietOption, ResolutionOption, SmoothingOption
from export3d_cli.cli.progress import progress, warn


def preprocess(
    videos: Annotated[list[Path], typer.Argument(help="Videos, or folders searched recursively for videos.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder (created; resumed if it exists).")],
    resolution: ResolutionOption = 256,
    fps: Annotated[float, typer.Option("--fps", min=1.0, max=120.0, help="Frame rate of the dataset.")] = 25.0,
    smoothing: SmoothingOption = 1.0,
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", min=0.0, max=1.0, help="Share of identities held out for testing.")
    ] = 0.1,
    identity_from: Annotated[
        str,
        typer.Option(
            "--identity-from", help="Identity of a clip: 'stem' (file name) or 'parent' (its folder, e.g. id/clip.mp4)."
        ),
    ] = "stem",
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Keep at most this many frames per video.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/test split.")] = 0,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Align, analyse and store videos in the dataset layout (resumable; bad files are reported and skipped)."""
    from export3d_cli import __version__
    from export3d_cli.data.preprocess import (
        PreprocessConfig,
        check_compatible,
        existing_record,
        find_videos,
        preprocess_video,
        write_dataset_manifest,
    )
    from export3d_cli.errors import EXIT_USAGE, Export3DError, InputError, UsageError

    if identity_from not in ("stem", "parent"):
        raise UsageError(f"--identity-from must be 'stem' or 'parent', got {identity_from!r}")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a folder")
    config = PreprocessConfig(
        resolution=resolution,
        fps=fps,
        smoothing=smoothing,
        test_fraction=test_fraction,
        identity_from=identity_from,  # type: ignore[arg-type]
        max_frames=max_frames,
        seed=seed,
    )
    check_compatible(output, config)
    paths = find_videos(videos)
    if not paths:
        raise InputError(f"{', '.join(map(str, videos))}: no videos found")
    records, failures, resumed = [], [], 0
    try:
        with progress("Preprocessing", quiet=quiet) as bar:
            for number, video in enumerate(paths, start=1):
                bar.describe(f"[{number}/{len(paths)}] {video.name}")
                record = existing_record(output, video, config)
                if record is not None:
                    records.append(record)
                    resumed += 1
                    continue
                try:
                    records.append(preprocess_video(output, video, config, progress=bar.update))
                except Export3DError as error:
                    failures.append({"path": str(video), "error": error.message})
                    if not quiet:
                        warn(f"skipped {error.message}")
    finally:
        # Also on Ctrl-C: the manifest lists every clip finished so far, so the dataset is usable and resumable.
        if records:
            write_dataset_manifest(output, records, config, generator=f"export3d preprocess {__version__}")
    summary = {
        "output": str(output),
        "clips": len(records),
        "resumed": resumed,
        "frames": sum(record.frames for record in records),
        "missing_frames": sum(record.frames - record.valid_frames for record in records),
        "failed": failures,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(str(output))
    if failures:
        if not quiet:
            print(f"{len(failures)} of {len(paths)} videos failed; see the warnings above", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
