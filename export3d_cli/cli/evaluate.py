"""``export3d evaluate WEIGHTS DATASET``: the paper's Table 1 on a test split, beside the copy-source baseline."""

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
    face_metrics: Annotated[
        bool,
        typer.Option(
            "--face-metrics/--no-face-metrics", help="Measure the faces (AED, APD, CSIM, AKD, ...); off: PSNR/SSIM."
        ),
    ] = True,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Same- and cross-identity PSNR, SSIM, AKD, CSIM (dlib ResNet), AED, APD, face found and expression r."""

    from export3d_cli.cli.progress import warn
    from export3d_cli.errors import InputError, UsageError
    from export3d_cli.metrics.dlib_models import MissingEvalDependencies, load_identity_network, load_keypoint_predictor
    from export3d_cli.models.weights_io import load_model
    from export3d_cli.pipeline.animator import choose_device
    from export3d_cli.training.dataset import ClipDataset
    from export3d_cli.training.evaluation import evaluate_model

    if split not in ("train", "test"):
        raise UsageError(f"--split must be 'train' or 'test', got {split!r}")
    model = load_model(weights).to(choose_device(device)).eval()
    data = ClipDataset(Path(dataset), resolution=model.config.resolution)
    if not data.clips(split) and not data.clips(split, cross_identity=True):
        raise InputError(f"{dataset}: no {split} clips to evaluate")
    identity_metrics = face_metrics
    if face_metrics:
        try:
            load_identity_network(), load_keypoint_predictor()
        except MissingEvalDependencies as missing:
            identity_metrics = False
            if not quiet:
                warn(f"CSIM and AKD left out: {missing.message}")
    with progress("Evaluating", quiet=quiet, unit="clips") as bar:
        metrics = evaluate_model(
            model,
            data,
            split=split,
            max_clips=max_clips,
            max_frames=max_frames,
            batch_size=batch_size,
            face_metrics=face_metrics,
            identity_metrics=identity_metrics,
            progress=bar.update,
        )
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    for line in evaluation_table(metrics):
        typer.echo(line)


_COLUMNS = {"same": ("psnr", "ssim", "akd", "csim", "aed", "apd"), "cross": ("psnr", "ssim", "csim", "aed", "apd")}
_HEADERS = {"psnr": "PSNR↑", "ssim": "SSIM↑", "akd": "AKD↓", "csim": "CSIM↑", "aed": "AED↓", "apd": "APD↓"}
_DIGITS = {"psnr": 2, "ssim": 3, "akd": 2, "csim": 3, "aed": 4, "apd": 2}


def evaluation_table(metrics: dict) -> list[str]:
    """The paper's Table 1 layout: a block per condition, model and baseline rows, n/a where not measured."""

    def cell(value: float | None, digits: int) -> str:
        return f"{'n/a' if value is None else f'{value:.{digits}f}':>8}"

    lines = []
    for name, title in (("same", "Same identity (self-reenactment)"), ("cross", "Cross identity")):
        columns = _COLUMNS[name]
        measured = metrics[f"face_found_{name}"] is not None
        faces = f"{metrics[f'face_pairs_{name}']} with faces on both sides" if measured else "faces not measured"
        lines.append(f"{title}: {metrics[f'frames_{name}']} frames, {faces}")
        lines.append(
            f"{'':18}"
            + "".join(f"{_HEADERS[c]:>8}" for c in columns)
            + "  face found  expression r (jaw smile blink brow)"
        )
        for label, suffix in (("export3d", ""), ("copy source", "_baseline")):
            r = metrics[f"expression_r_{name}{suffix}"] or {}
            rs = " ".join("n/a" if r.get(k) is None else f"{r[k]:.2f}" for k in ("jaw", "smile", "blink", "brow"))
            lines.append(
                f"{label:18}"
                + "".join(cell(metrics[f"{c}_{name}{suffix}"], _DIGITS[c]) for c in columns)
                + f"  {cell(metrics[f'face_found_{name}{suffix}'], 3)}  {rs}"
            )
    lines.append("CSIM: dlib ResNet (the paper: ArcFace); AKD: dlib 68 keypoints, pixels of a 256² crop.")
    return lines
