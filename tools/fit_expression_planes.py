"""Fit expression tri-planes (``models/expression_planes.py``) onto trained weights, everything else frozen.

    python tools/fit_expression_planes.py WEIGHTS DATASET -o RUN [--steps 1500] [--lr 1e-2] [--batch 8]
        [--region-weight W] [--pair-sampling uniform|expression] [--coordinates clebs|blendshapes]

Each step draws ``--batch`` source/target pairs of the training split as stage 2 does (``sample_pairs``: same
clip, the target a frame with a face) and fits the directions D_k so that G's tri-plane + Σ z_k D_k, rendered at
the target's camera, reproduces the target: personalisation's ``reconstruction_loss`` (L1 on the image and on the
raw image, 0.5·(1 − SSIM)) plus a small L2 on D (what the data do not constrain stays zero), and with
``--region-weight`` the stage-2 L1 on the target's mouth, eyes and brows (``expression_region_l1``: at 128² they are
a few percent of the pixels, so a smile that is not shown barely costs anything in the whole-image terms);
``--pair-sampling expression`` draws targets whose expression differs from the source's more often, as stage 2's
option of that name. G, the renderer, SR and
CLeBS are frozen (eval mode), so their weights are kept bit for bit and only ``generator.expression_planes.*`` is
new. The coordinates z are fixed from the training split's frames before the first step: the CLeBS coefficients
(``--coordinates clebs``, the default: the basis V, the coefficients' mean and spread) or the n leading principal
components of β over those frames (``--coordinates blendshapes``; ``models/expression_planes.py`` says what each
gave).

Resumable: ``RUN/checkpoint.safetensors`` (+ ``.json``) every ``--checkpoint-every`` steps holds D and Adam's state;
a step's pairs are drawn from ``seed + step``, so a resumed run draws what an uninterrupted one would. At the end
``RUN/model/`` holds the weights (``config.json`` as the base's, with ``generator.expression_planes`` on) and
``RUN/fit.json`` the losses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from export3d_cli.atomic import atomic_path, atomic_write_text
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.expression_planes import principal_directions
from export3d_cli.models.weights_io import CONFIG_FILE, load_model
from export3d_cli.personalization.tuning import reconstruction_loss
from export3d_cli.training.dataset import ClipDataset, sample_pairs
from export3d_cli.training.losses import expression_region_l1
from export3d_cli.training.train_config import PAIR_SAMPLINGS

CHECKPOINT = "checkpoint.safetensors"
SSIM_WEIGHT = 0.5


def with_expression_planes(base: Export3D, coordinates: str = "clebs") -> Export3D:
    """``base`` rebuilt with expression planes on ``coordinates`` (zero directions unless ``base`` has some on the
    same coordinates: then a fit continues from them), every other tensor copied."""
    if base.config.generator.expression_planes and base.config.generator.expression_planes_coordinates != coordinates:
        base = _without_expression_planes(base)
    generator = dataclasses.replace(
        base.config.generator, expression_planes=True, expression_planes_coordinates=coordinates
    )
    config = dataclasses.replace(base.config, generator=generator)
    model = Export3D(config)
    result = model.load_state_dict(base.state_dict(), strict=False)
    unexpected = [key for key in result.missing_keys if not key.startswith("generator.expression_planes.")]
    if result.unexpected_keys or unexpected:
        raise SystemExit(f"weights do not fit: {result}")
    return model


def _without_expression_planes(base: Export3D) -> Export3D:
    generator = dataclasses.replace(base.config.generator, expression_planes=False)
    model = Export3D(dataclasses.replace(base.config, generator=generator))
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("generator.expression_planes.")}
    model.load_state_dict(state, strict=True)
    return model


@torch.no_grad()
def set_coordinates(model: Export3D, data: ClipDataset, clips) -> None:
    planes = model.generator.expression_planes
    expression = torch.from_numpy(data.measured_expressions(clips)).float()  # frames with a face, as the trainer
    if planes.reads == "blendshapes":
        basis = principal_directions(expression, planes.directions.shape[0])  # [E, n]
        planes.set_coordinates(basis, expression @ basis)
        return
    encoder = model.expression_encoder
    basis = encoder.basis()
    planes.set_coordinates(basis, encoder(expression) @ basis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("dataset")
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--decay", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--region-weight", type=float, default=0.0)
    parser.add_argument("--pair-sampling", choices=PAIR_SAMPLINGS, default="uniform")
    parser.add_argument("--coordinates", choices=("clebs", "blendshapes"), default="clebs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    args = parser.parse_args()

    base_directory = Path(args.weights)
    model = with_expression_planes(load_model(base_directory), args.coordinates).eval()
    model.requires_grad_(False)
    planes = model.generator.expression_planes
    planes.directions.requires_grad_(True)
    data = ClipDataset(args.dataset, resolution=model.config.resolution)
    clips = data.clips("train")
    set_coordinates(model, data, clips)
    optimizer = torch.optim.Adam([planes.directions], lr=args.lr)
    args.output.mkdir(parents=True, exist_ok=True)
    checkpoint = args.output / CHECKPOINT
    first, losses = 1, []
    if checkpoint.is_file():
        state = load_file(str(checkpoint))
        progress = json.loads(checkpoint.with_suffix(".json").read_text())
        with torch.no_grad():
            planes.directions.copy_(state["directions"])
        planes.directions.grad = torch.zeros_like(planes.directions)
        optimizer.step()  # creates Adam's state for the parameter (a zero gradient moves nothing)
        adam = optimizer.state[planes.directions]
        adam["exp_avg"].copy_(state["exp_avg"])
        adam["exp_avg_sq"].copy_(state["exp_avg_sq"])
        adam["step"].fill_(progress["step"])
        first, losses = progress["step"] + 1, progress["losses"]
        print(f"resumed at step {progress['step']}", flush=True)
    start = time.perf_counter()
    for step in range(first, args.steps + 1):
        pairs = sample_pairs(data, clips, args.batch, np.random.default_rng(args.seed + step), args.pair_sampling)
        with torch.no_grad():
            features = model.encode_source(pairs.source)
            embedding = model.expression_encoder(pairs.driving.expression)
        # Only the directions require a gradient, so autograd records G's forward from the planes' term on.
        planes_now = model.generator.generate(features, embedding, pairs.driving.expression)
        output = model.render_planes(planes_now, pairs.driving.camera)
        loss = (
            reconstruction_loss(output, pairs.driving.images, SSIM_WEIGHT)
            + args.decay * planes.directions.square().mean()
        )
        if args.region_weight > 0:
            loss = loss + args.region_weight * expression_region_l1(
                output.image, pairs.driving.images, pairs.driving.landmarks
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(round(float(loss.detach()), 5))
        if step % 10 == 0:
            print(f"step {step} loss {np.mean(losses[-10:]):.4f} {time.perf_counter() - start:.0f} s", flush=True)
        if step % args.checkpoint_every == 0 or step == args.steps:
            adam = optimizer.state[planes.directions]
            with atomic_path(checkpoint) as tmp:
                save_file(
                    {
                        "directions": planes.directions.detach().contiguous(),
                        "exp_avg": adam["exp_avg"].contiguous(),
                        "exp_avg_sq": adam["exp_avg_sq"].contiguous(),
                    },
                    str(tmp),
                )
            atomic_write_text(checkpoint.with_suffix(".json"), json.dumps({"step": step, "losses": losses}))
    model.requires_grad_(False)
    target_directory = args.output / "model"
    model.save_pretrained(target_directory)
    # Keep what the base's config.json says besides the architecture (e.g. "personalization").
    base_config = json.loads((base_directory / CONFIG_FILE).read_text())
    new_config = json.loads((target_directory / CONFIG_FILE).read_text())
    merged = {**base_config, "config": new_config["config"]}
    atomic_write_text(target_directory / CONFIG_FILE, json.dumps(merged, indent=2) + "\n")
    for extra in base_directory.iterdir():
        if extra.name not in ("model.safetensors", CONFIG_FILE) and extra.is_file():
            shutil.copy2(extra, target_directory / extra.name)
    summary = {
        "steps": args.steps,
        "lr": args.lr,
        "decay": args.decay,
        "batch": args.batch,
        "region_weight": args.region_weight,
        "pair_sampling": args.pair_sampling,
        "coordinates": args.coordinates,
        "seed": args.seed,
        "clips": len(clips),
        "first_loss": losses[0],
        "last_loss": float(np.mean(losses[-50:])),
    }
    atomic_write_text(args.output / "fit.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
