"""``export3d personalize PHOTO... -o DIR``: adapt the model to each photo once, reuse it for any driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import FaceIndexOption, JsonOption, QuietOption, WeightsOption
from export3d_cli.cli.progress import progress
from export3d_cli.personalization.tuning_config import TuningConfig


def personalize(
    photos: Annotated[list[Path], typer.Argument(help="Portrait photos (one personalised file each).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.safetensors + NAME.json.")],
    weights: WeightsOption = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Tuning steps per photo.")] = TuningConfig.steps,
    set_size: Annotated[
        int, typer.Option("--set-size", min=0, help="Expressions the photo is warped to for the personal set.")
    ] = TuningConfig.set_size,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the personal set and of tuning.")] = 0,
    coordinates: Annotated[
        str,
        typer.Option(
            "--coordinates",
            help="What the person's expression directions read: clebs (the CLeBS coefficients of β′) or blendshapes "
            "(the principal components of the personal set's β; docs/personalization.md).",
        ),
    ] = TuningConfig.coordinates,
    face_index: FaceIndexOption = 0,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune the model to each photo's person (identity kept, expression control kept); see DESIGN §10."""
    from export3d_cli.atomic import prepare_output_file
    from export3d_cli.errors import UsageError
    from export3d_cli.personalization.personalize import Personalizer

    config = TuningConfig(steps=steps, set_size=set_size, seed=seed, coordinates=coordinates)
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: -o must be a folder")
    targets = {}
    for photo in photos:
        target = output / f"{photo.stem}.safetensors"
        if target in targets.values():
            raise UsageError(f"{photo}: another photo is also named {photo.stem!r}; their results would collide")
        targets[photo] = target
    for target in targets.values():
        prepare_output_file(target, inputs=photos)
        prepare_output_file(target.with_suffix(".json"), inputs=photos)
    personalizer = Personalizer.from_weights(weights)
    prepared = [personalizer.prepare(photo, face_index=face_index) for photo in photos]  # every photo checked first
    summaries = []
    with progress("Personalising", quiet=quiet, unit="steps") as bar:
        for number, (photo, work) in enumerate(zip(photos, prepared, strict=True), start=1):
            bar.stage(f"{photo.name} ({number}/{len(photos)}): personal set")
            personal_set = work.personal_set(config)
            bar.stage(f"{photo.name} ({number}/{len(photos)}): tuning", total=config.steps)
            metadata = personalizer.personalize(
                work, personal_set, config, targets[photo], on_step=lambda step, total, _: bar.update(step, total)
            )
            summaries.append({"photo": str(photo), "output": str(targets[photo]), **metadata})
    if as_json:
        typer.echo(json.dumps(summaries if len(summaries) > 1 else summaries[0]))
    else:
        for summary in summaries:
            typer.echo(summary["output"])
