"""``export3d evaluate WEIGHTS DATASET``: PSNR/SSIM on the test split, same- and cross-identity, with a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import JsonOption, QuietOption
from export3d_cli.cli.progress import progress
from export3d_cli.cli.training_options import DatasetArgument, DeviceOption


def evaluate(
    weights: Annotated[
        str, typer.Argument(help="Weights: a folder with model.safetensors + config.json, or a hub id.")
    ],
    dataset: DatasetArgument,
    split: Annotated[str, typer.Option("--split", help="Which split to evaluate (train or test).")] = "test",
    max_clips: Annotated[int | None, typer.Option("--max-clips", min=1, help="Evaluate at most N clips.")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="At most N frames per clip.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Frames rendered at once.")] = 8,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Same-identity and cross-identity PSNR/SSIM, and the copy-the-source baseline for comparison."""

    from export3d_cli.errors import UsageError
    from export3d_cli.models.weights_io import load_model
    from export3d_cli.pipeline.animator import choose_device
    from export3d_cli.training.dataset import ClipDataset
    from export3d_cli.training.evaluation import evaluate_model

    if split not in ("train", "test"):
        raise UsageError(f"--split must be 'train' or 'test', got {split!r}")
    model = load_model(weights).to(choose_device(device)).eval()
    data = ClipDataset(Path(dataset), resolution=model.config.resolution)
    with progress("Evaluating", quiet=quiet, unit="clips") as bar:
        metrics = evaluate_model(
            model,
            data,
            split=split,
            max_clips=max_clips,
            max_frames=max_frames,
            batch_size=batch_size,
            progress=bar.update,
        )
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        typer.echo(f"{key}: {'n/a' if value is None else (f'{value:.4f}' if isinstance(value, float) else value)}")
