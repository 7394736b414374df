"""Option aliases shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no warnings on stderr.")]
SmoothingOption = Annotated[
    float,
    typer.Option(
        "--smoothing", min=0.0, help="Temporal smoothing strength (One-Euro): 0 = off, 1 = default, larger = smoother."
    ),
]
FaceIndexOption = Annotated[
    int, typer.Option("--face-index", min=0, help="Which face when there are several: 0 = the largest.")
]
ResolutionOption = Annotated[int, typer.Option("--resolution", min=64, max=1024, help="Aligned crop size R (pixels).")]
WeightsOption = Annotated[
    str | None,
    typer.Option(
        "--weights", help="Model weights: a folder (model.safetensors + config.json) or a hub id. Default: bundled."
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="fp32, or bf16 / fp16 on a GPU.")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Frames rendered at once.")]
PersonalizedOption = Annotated[
    Path | None,
    typer.Option(
        "--personalized",
        help="Use the result of `export3d personalize` for the photo: its .safetensors file or the output folder.",
    ),
]
NoPersonalizeOption = Annotated[
    bool,
    typer.Option(
        "--no-personalize",
        help="Use the base model as it is, even where its config asks to personalise each photo first.",
    ),
]
