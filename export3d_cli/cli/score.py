"""``export3d score GENERATED --source PHOTO --driver DRIVER``: the paper's metrics for any generated video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from export3d_cli.cli.options import JsonOption, QuietOption
from export3d_cli.cli.progress import progress

# The keys of `--json`, in order; the reference-only ones appear only with --reference.
SCORE_KEYS = ("frames", "face_found", "csim_source", "csim_driver", "aed", "apd", "expression_r")
REFERENCE_KEYS = ("psnr", "ssim", "akd")


def _format(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def score_table(summary: dict, with_reference: bool) -> list[str]:
    """The human-readable report of ``score`` (one metric a line)."""
    r = summary["expression_r"]
    lines = [
        f"frames scored            {summary['frames']}",
        f"face found               {_format(summary['face_found'], 3)}  (share of generated frames)",
        f"CSIM source (dlib ResNet) {_format(summary['csim_source'], 3)}  (identity kept: higher is better)",
        f"CSIM driver (dlib ResNet) {_format(summary['csim_driver'], 3)}  (driver identity leaked: lower is better)",
        f"AED                      {_format(summary['aed'], 4)}  (mean |Δβ| over 52 blendshapes)",
        f"APD                      {_format(summary['apd'], 2)}  (mean |Δ yaw, pitch, roll|, degrees)",
        "expression r             "
        + "  ".join(f"{name} {_format(value, 2)}" for name, value in r.items())
        + "  (Pearson r vs the driver)",
    ]
    if with_reference:
        lines += [
            f"PSNR                     {_format(summary['psnr'], 2)} dB",
            f"SSIM                     {_format(summary['ssim'], 4)}",
            f"AKD                      {_format(summary['akd'], 2)}  (68 dlib keypoints, pixels of a 256² crop)",
        ]
    excluded = summary["frames"] - summary["expression_pairs"]
    lines.append(
        f"left out                 {excluded} of {summary['frames']} frames from AED/APD/r (no face in the generated"
        f" or the driving frame; {summary['driving_missing']} without a driving face)"
    )
    if with_reference:
        lines.append(
            f"                         {summary['frames'] - summary['akd_pairs']} from AKD"
            f" ({summary['reference_missing']} without a reference face)"
        )
    return lines


def score(
    generated: Annotated[Path, typer.Argument(help="The generated video to score (any tool's output).")],
    source: Annotated[Path, typer.Option("--source", help="The source photo the video should show.")],
    driver: Annotated[Path, typer.Option("--driver", help="The driving video whose expression and pose it follows.")],
    reference: Annotated[
        Path | None,
        typer.Option("--reference", help="Ground-truth video (self-reenactment): adds PSNR, SSIM and AKD."),
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Score a generated video: identity (CSIM), expression (AED, r), pose (APD), face found; PSNR/SSIM/AKD too."""
    from export3d_cli.cli.progress import warn
    from export3d_cli.metrics.video_score import score_video

    with progress(f"Scoring {generated.name}", quiet=quiet) as bar:
        summary = score_video(generated, source=source, driver=driver, reference=reference, progress=bar.update)
    if not quiet:
        for message in summary["warnings"]:
            warn(message)
    with_reference = reference is not None
    if as_json:
        keys = SCORE_KEYS + (REFERENCE_KEYS if with_reference else ())
        typer.echo(json.dumps({key: summary[key] for key in keys}))
        return
    for line in score_table(summary, with_reference):
        typer.echo(line)
