"""``export3d sweep-basis SOURCE --index I [--range LO:HI|auto] [--steps K] [--measure] -o OUT`` (paper Fig. 9).

CLeBS writes an expression as β' = Σ λ_i v_i over n learned orthonormal
directions. This renders the source with the coefficients of its own expression,
except λ_I, which takes K values from LO to HI. The camera is the source's own.
Output: a video (.mp4) or a grid image, each tile captioned with its λ.

The paper scales λ_4 and λ_8 from 1 to 10; here learned coefficients are of order
0.1 (a photo's own λ is typically within ±0.3), so ``--range auto`` (the default)
sweeps what faces produce: with expression tri-planes on the CLeBS coefficients, whose
buffers hold how λ_I spreads over the training frames, its mean ± 2.5 standard
deviations; otherwise the span λ_I takes over the neutral face and the 52
single-blendshape extremes (``CLeBS.coefficient_span``). Expression tri-planes on β's
principal components follow the sweep through ``blendshapes_along``: the smallest
change of β that moves λ_I alone (to first order). ``--measure``
re-measures the 52 blendshapes on every tile with the face pipeline and reports
which ones the direction moves, and by how much.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from export3d_cli.cli.novel_view import parse_range
from export3d_cli.cli.options import (
    BatchSizeOption,
    DeviceOption,
    FaceIndexOption,
    JsonOption,
    NoPersonalizeOption,
    PersonalizedOption,
    PrecisionOption,
    QuietOption,
    WeightsOption,
)
from export3d_cli.cli.personalizing import check_personalization_options, choose_model_for_photo
from export3d_cli.cli.progress import progress

if TYPE_CHECKING:  # the model (and torch) load only when the command runs
    import torch

    from export3d_cli.models.export3d import Export3D


def sweep_basis(
    source: Annotated[Path, typer.Argument(help="Portrait photo.")],
    index: Annotated[int, typer.Option("--index", help="Which CLeBS direction (0 … n-1).")],
    value_range: Annotated[
        str, typer.Option("--range", help="LO:HI values taken by λ_index, or auto (the span faces produce).")
    ] = "auto",
    steps: Annotated[int, typer.Option("--steps", min=2, help="Values between LO and HI.")] = 10,
    output: Annotated[Path, typer.Option("-o", "--output", help="Grid image (.png/.jpg) or video (.mp4).")] = Path(
        "sweep.png"
    ),
    fps: Annotated[float, typer.Option("--fps", min=1.0, max=120.0, help="Frame rate of a video.")] = 10.0,
    measure: Annotated[
        bool, typer.Option("--measure", help="Re-measure the blendshapes on every tile; report what moves.")
    ] = False,
    weights: WeightsOption = None,
    personalized: PersonalizedOption = None,
    no_personalize: NoPersonalizeOption = False,
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
    from export3d_cli.pipeline.tile_labels import caption_frame

    automatic = value_range.strip().lower() == "auto"
    low, high = (0.0, 0.0) if automatic else parse_range(value_range, "--range", 1e4)
    if output.suffix.lower() not in (*IMAGE_OUTPUTS, *VIDEO_OUTPUTS):
        raise UsageError(f"{output}: write .png, .jpg, .webp, .bmp or .mp4")
    check_personalization_options(personalized, no_personalize)
    animator = Animator.from_weights(weights, device=device, precision=precision, batch_size=batch_size)
    encoder = animator.model.expression_encoder
    if not isinstance(encoder, CLeBS):
        raise UsageError("sweep-basis needs weights with a CLeBS expression encoder (these use the direct ablation)")
    basis_size = encoder.config.basis_size
    if not 0 <= index < basis_size:
        raise UsageError(
            f"--index must be between 0 and {basis_size - 1} (the model has n = {basis_size}), got {index}"
        )
    if automatic:
        low, high = automatic_range(animator.model, index)
    prepare_output_file(output, inputs=[source])
    analysis = analyze_image(source, face_index=face_index)
    choose_model_for_photo(animator, source, personalized, no_personalize, face_index=face_index, quiet=quiet)
    encoded = animator.encode(analysis.crop, analysis.expression)
    with torch.no_grad():
        beta = torch.from_numpy(analysis.expression[None]).to(animator.device)
        own = encoder.coefficients_of(beta)  # [1, n]
        coefficients = own.repeat(steps, 1)  # [K, n]
        values = torch.linspace(low, high, steps, device=animator.device)
        coefficients[:, index] = values
        embedding = encoder.from_coefficients(coefficients)  # [K, d]
        blendshapes = blendshapes_along(animator.model, beta.float(), index, values)  # [K, E]
    cameras = np.repeat(analysis.camera[None], steps, axis=0)
    with progress("Rendering the sweep", quiet=quiet) as bar:
        frames: list[np.ndarray] = []  # uncaptioned, for --measure

        def captioned() -> Iterator[np.ndarray]:
            rendered = animator.render_embedding(encoded, embedding, cameras, blendshapes)
            for frame, value in zip(rendered, values.tolist(), strict=True):
                frames.append(frame)
                yield caption_frame(frame, f"lam{index} {value:+.3f}")

        write_views(output, captioned(), count=steps, size=animator.resolution, fps=fps, on_frame=bar.update)
    summary = {
        "output": str(output),
        "index": index,
        "values": values.tolist(),
        "range": "auto" if automatic else "given",
        "source_lambda": float(own[0, index]),
    }
    if measure:
        with progress("Measuring the tiles", quiet=quiet):
            summary.update(measure_sweep(frames))
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(str(output))
    if measure:
        typer.echo(moves_table(summary))


SWEEP_SPREAD = 2.5  # standard deviations either side of the mean: ~99% of the training frames' λ
# Blendshapes listed per sweep: the directions are orthogonal in β' but each moves a handful of blendshapes.
TOP_MOVES = 5


def automatic_range(model: Export3D, index: int) -> tuple[float, float]:
    """``--range auto`` for λ_index: mean ± SWEEP_SPREAD standard deviations over the training frames where the
    weights know them (expression tri-planes), else ``CLeBS.coefficient_span``.

    Why not always the span: the planes are linear in the standardised λ, and the single-blendshape extremes lie
    up to 8 standard deviations out (bundled weights), where the planes' offsets make unrecognisable tiles.
    """
    planes = model.generator.expression_planes
    if planes is not None and planes.reads == "clebs":
        mean, spread = float(planes.coefficient_mean[index]), float(planes.coefficient_std[index])
        return mean - SWEEP_SPREAD * spread, mean + SWEEP_SPREAD * spread
    low, high = model.expression_encoder.coefficient_span()
    return float(low[index]), float(high[index])


def blendshapes_along(model: Export3D, expression: torch.Tensor, index: int, values: torch.Tensor) -> torch.Tensor:
    """β [K, E] for λ_index swept through ``values`` [K] from the photo's β [1, E]: β + J⁺ e_index (λ − λ_photo),
    clamped to [0, 1].

    J = ∂λ/∂β [n, E] is CLeBS's Jacobian at the photo's β, and its pseudo-inverse gives the smallest change of the
    blendshapes that moves λ_index alone, to first order: what the direction stands for in blendshapes, so that
    expression tri-planes that read β (``expression_planes.py``) show it as well as G does.
    """
    import torch

    encoder = model.expression_encoder
    with torch.enable_grad():
        jacobian = torch.autograd.functional.jacobian(
            lambda beta: encoder.coefficients_of(beta[None])[0], expression[0]
        )
    step = torch.linalg.pinv(jacobian)[:, index]  # [E]: β change per unit of λ_index
    own = encoder.coefficients_of(expression)[0, index]
    return (expression + (values - own)[:, None] * step[None]).clamp(0.0, 1.0)


def measure_sweep(frames: list[np.ndarray]) -> dict:
    """Blendshapes measured on each tile; ``moves``: the TOP_MOVES largest |last − first| changes (name, Δ).

    Tiles without a face are reported as such and left out of ``moves``, which compares the first and last
    tiles that have one.
    """
    from export3d_cli.face.blendshapes import BLENDSHAPE_NAMES
    from export3d_cli.metrics.face_measurement import FaceMeter

    with FaceMeter() as meter:
        measured = [meter.measure(frame) for frame in frames]
    found = [m.expression for m in measured if m is not None]
    moves: list[list] = []
    if len(found) >= 2:
        delta = found[-1] - found[0]
        order = np.argsort(-np.abs(delta))[:TOP_MOVES]
        moves = [[BLENDSHAPE_NAMES[i], round(float(delta[i]), 4)] for i in order]
    return {"face_found": [m is not None for m in measured], "moves": moves}


def moves_table(summary: dict) -> str:
    """Text lines: faces found, and each moved blendshape with its change from the first to the last tile."""
    found = summary["face_found"]
    lines = [f"face found in {sum(found)} of {len(found)} tiles"]
    if not summary["moves"]:
        return "\n".join([*lines, "fewer than two tiles with a face: nothing to compare"])
    first, last = summary["values"][0], summary["values"][-1]
    lines.append(f"blendshape change from λ = {first:+.3g} to {last:+.3g}:")
    lines += [f"  {name:<22} {delta:+.3f}" for name, delta in summary["moves"]]
    return "\n".join(lines)
