"""Options shared by the training commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DatasetArgument = Annotated[Path, typer.Argument(help="Dataset folder (export3d preprocess or export3d synth).")]
RunOption = Annotated[
    Path, typer.Option("-o", "--output", help="Run folder (created; resumed if it has a checkpoint).")
]
PresetOption = Annotated[str, typer.Option("--preset", help="Training preset: tiny, small-128 (CPU) or paper-256.")]
StepsOption = Annotated[int | None, typer.Option("--steps", min=0, help="Total optimisation steps (preset default).")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed (preset default 0).")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
