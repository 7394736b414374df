"""``export3d synth -o DATASET``: synthetic talking heads with exact ground truth, in the dataset layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import JsonOption, QuietOption
from export3d_cli.cli.progress import progress


def synth(
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder (created; resumed if it exists).")],
    identities: Annotated[int, typer.Option("--identities", min=1, help="Number of synthetic people.")] = 20,
    clips_per_identity: Annotated[int, typer.Option("--clips-per-identity", min=1, help="Clips per person.")] = 2,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per clip (25 fps).")] = 50,
    resolution: Annotated[int, typer.Option("--resolution", min=32, max=1024, help="Frame size R (pixels).")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same arguments give byte-identical output.")] = 0,
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", min=0.0, max=0.9, help="Share of identities held out for testing.")
    ] = 0.1,
    cross_clips: Annotated[
        int, typer.Option("--cross-clips", min=0, help="Cross-identity ground-truth clips per test identity.")
    ] = 1,
    expressions: Annotated[
        str,
        typer.Option(
            "--expressions",
            help="Expression range: full (talking and held expressions across the whole range) or speech.",
        ),
    ] = "full",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Render synthetic talking heads (known expressions and cameras) into the dataset layout."""
    from export3d_cli import __version__
    from export3d_cli.synth.dataset_generator import SynthConfig, generate_dataset, total_frames

    if output.exists() and not output.is_dir():
        from export3d_cli.errors import UsageError

        raise UsageError(f"{output}: exists and is not a folder")
    config = SynthConfig(
        identities=identities,
        clips_per_identity=clips_per_identity,
        frames=frames,
        resolution=resolution,
        seed=seed,
        test_fraction=test_fraction,
        cross_clips=cross_clips,
        expressions=expressions,
    )
    total = total_frames(config)
    done = 0
    with progress("Rendering synthetic heads", quiet=quiet) as bar:

        def tick(count: int) -> None:
            nonlocal done
            done += count
            bar.update(done, total)

        manifest = generate_dataset(output, config, tick, generator=f"export3d synth {__version__}")
    if as_json:
        summary = {
            "output": str(output),
            "clips": len(manifest.clips),
            "train_clips": len(manifest.split("train")),
            "test_clips": len(manifest.split("test")),
            "frames": sum(clip.frames for clip in manifest.clips),
            "undetected_frames": sum(clip.frames - clip.valid_frames for clip in manifest.clips),
        }
        typer.echo(json.dumps(summary))
    else:
        typer.echo(str(output))
