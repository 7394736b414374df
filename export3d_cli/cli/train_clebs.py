"""``export3d train-clebs DATASET -o RUN``: contrastive pre-training of the expression encoder (paper Eq. 1)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from export3d_cli.cli.options import JsonOption, QuietOption
from export3d_cli.cli.progress import progress
from export3d_cli.cli.training_options import (
    DatasetArgument,
    DeviceOption,
    PresetOption,
    RunOption,
    SeedOption,
    StepsOption,
)


def train_clebs(
    dataset: DatasetArgument,
    output: RunOption,
    preset_name: PresetOption = "small-128",
    steps: StepsOption = None,
    clip_batch: Annotated[int | None, typer.Option("--clip-batch", min=2, help="Frames per batch (one clip).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Learning rate.")] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            help="paper: Eq. (1) as written (positive not in the denominator; τ runs to its clamp); infonce: the "
            "positive in the denominator, symmetric (preset default: paper).",
        ),
    ] = None,
    centre: Annotated[
        str | None,
        typer.Option(
            "--centre",
            help="images: remove each clip batch's mean from f_I's embeddings; both: from f_e's too, so Eq. (1) "
            "compares only what changes within the clip (preset default: images).",
        ),
    ] = None,
    image_input: Annotated[
        str | None,
        typer.Option(
            "--image-input",
            help="What the image encoder f_I sees of a frame: pixels (the paper's crop) or landmarks (the face "
            "pipeline's 478 points, normalised per frame) (preset default: pixels).",
        ),
    ] = None,
    seed: SeedOption = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Pre-train CLeBS f_e with an image encoder f_I; every batch comes from one clip. Saves f_e in RUN/clebs."""
    import os

    from export3d_cli.errors import UsageError
    from export3d_cli.training.clebs_trainer import ClebsTrainer
    from export3d_cli.training.dataset import ClipDataset
    from export3d_cli.training.distributed import setup_process_group
    from export3d_cli.training.train_config import clebs_preset, with_overrides

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("train-clebs runs in one process (it is small); launch it without torchrun")
    config = with_overrides(
        clebs_preset(preset_name),
        steps=steps,
        clip_batch=clip_batch,
        lr=lr,
        objective=objective,
        centre=centre,
        image_input=image_input,
        seed=seed,
    )
    group = setup_process_group(device)
    from export3d_cli.config import preset

    data = ClipDataset(dataset, resolution=preset(config.preset).resolution)
    trainer = ClebsTrainer(data, output, config, group.device)
    resumed = trainer.resume_if_possible()
    with progress("CLeBS", quiet=quiet, unit="steps") as bar:

        def on_step(step: int, total: int, terms: dict[str, float]) -> None:
            bar.describe(f"CLeBS loss {terms['loss']:.3f} τ {terms['tau']:.3f}")
            bar.update(step, total)

        metrics = trainer.train(on_step)
    summary = {"output": str(output), "steps": trainer.step, "resumed": resumed, **metrics}
    typer.echo(json.dumps(summary) if as_json else str(output))
