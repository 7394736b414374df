"""``export3d sweep-basis SOURCE --index I [--range LO:HI] [--steps K] -o OUT`` (paper Fig. 9).

CLeBS writes an expression as β' = Σ λ_i v_i over n learned orthonormal
directions. This renders the source with the coefficients of its own expression,
except λ_I, which takes K values from LO to HI (the paper scales λ_4 and λ_8 from
1 to 10). The camera is the source's own. Output: a video (.mp4) or a grid image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from export3d_cli.cli.novel_view import parse_range
from export3d_cli.cli.options import (
    BatchSizeOption,
    DeviceOption,
    FaceIndexOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    WeightsOption,
)
from export3d_cli.cli.progress import progress


def sweep_basis(
    source: Annotated[Path, typer.Argument(help="Portrait photo.")],
    index: Annotated[int, typer.Option("--index", help="Which CLeBS direction (0 … n-1).")],
    value_range: Annotated[str, typer.Option("--range", help="LO:HI values taken by λ_index.")] = "1:10",
    steps: Annotated[int, typer.Option("--steps", min=2, help="Values between LO and HI.")] = 10,
    output: Annotated[Path, typer.Option("-o", "--output", help="Grid image (.png/.jpg) or video (.mp4).")] = Path(
        "sweep.png"
    ),
    fps: Annotated[float, typer.Option("--fps", min=1.0, max=120.0, help="Frame rate of a video.")] = 10.0,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    batch_size: BatchSizeOption = 8,
    face_index: FaceIndexOption = 0,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Scale one learned CLeBS basis direction on the source (paper Fig. 9)."""
    import torch

    from export3d_cli.atomic import prepare_output_file
    from export3d_cli.errors import UsageError
    from export3d_cli.face.analysis import analyze_image
    from export3d_cli.models.expression_encoder import CLeBS
    from export3d_cli.pipeline.animator import Animator
    from export3d_cli.pipeline.frame_output import IMAGE_OUTPUTS, VIDEO_OUTPUTS, write_views

    low, high = parse_range(value_range, "--range", 1e4)
    if output.suffix.lower() not in (*IMAGE_OUTPUTS, *VIDEO_OUTPUTS):
        raise UsageError(f"{output}: write .png, .jpg, .webp, .bmp or .mp4")
    animator = Animator.from_weights(weights, device=device, precision=precision, batch_size=batch_size)
    encoder = animator.model.expression_encoder
    if not isinstance(encoder, CLeBS):
        raise UsageError("sweep-basis needs weights with a CLeBS expression encoder (these use the direct ablation)")
    basis_size = encoder.config.basis_size
    if not 0 <= index < basis_size:
        raise UsageError(
            f"--index must be between 0 and {basis_size - 1} (the model has n = {basis_size}), got {index}"
        )
    prepare_output_file(output, inputs=[source])
    analysis = analyze_image(source, face_index=face_index)
    encoded = animator.encode(analysis.crop, analysis.expression)
    with torch.no_grad():
        beta = torch.from_numpy(analysis.expression[None]).to(animator.device)
        own = encoder.coefficients_of(beta)  # [1, n]
        coefficients = own.repeat(steps, 1)  # [K, n]
        values = torch.linspace(low, high, steps, device=animator.device)
        coefficients[:, index] = values
        embedding = encoder.from_coefficients(coefficients)  # [K, d]
    cameras = np.repeat(analysis.camera[None], steps, axis=0)
    with progress("Rendering the sweep", quiet=quiet) as bar:
        frames = animator.render_embedding(encoded, embedding, cameras)
        write_views(output, frames, count=steps, size=animator.resolution, fps=fps, on_frame=bar.update)
    if as_json:
        summary = {
            "output": str(output),
            "index": index,
            "values": values.tolist(),
            "source_lambda": float(own[0, index]),
        }
        typer.echo(json.dumps(summary))
    else:
        typer.echo(str(output))
