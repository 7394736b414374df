"""Measure why a model's expression does not follow the driver (issue: expression control).

Four measurements on a dataset made by ``export3d synth`` (or ``preprocess``), printed as JSON:

- ``response``: for held-out sources, set ONE signal of the source's own β (jaw, smile, blink, brow) to
  0, 0.25, …, 1 (camera and every other blendshape kept) and re-measure that signal on the output with the
  face pipeline. slope = (output at 1 − output at 0); a model with expression control has slope near 1.
- ``skip_swap``: the R/2 stem features (the generator's skip path) of the clip's most-open-jaw frame
  combined with the tokens and β of its most-closed frame, and the reverse: if the output's jawOpen follows
  the skip features rather than β, the skip path carries the source's expression.
- ``pair_difference``: |Δ signal| between source and driving frames of training pairs drawn as the trainer
  draws them, against the spread (std) of the signal over the whole training split.
- ``range``: percentiles of each signal over the dataset's measured frames.
- ``embedding``: how much β' = f_e(β) varies over the test frames (total std over frames / mean norm) and how well
  each signal can be read back from β' linearly (R² of a least-squares fit): what the generator can use.
- ``token_swap`` (in ``skip_swap``): the same swap for the source tokens (the ViT path) instead of the skip.
- ``representable``: a tri-plane optimised directly (G bypassed) to reproduce an open-jaw frame: can the renderer
  and SR show the open mouth at all?
- ``pair_fit``: the whole model (CLeBS frozen) fine-tuned on ONE source and two driving frames of its clip (most
  closed and most open jaw): can G learn to tell two expressions apart when it has nothing else to learn?
  ``--pair-fit-variant`` switches off the Gaussian low-pass of the upsampling, or resamples the R/2 skip from image
  space into plane-0 coordinates (the xy plane is stored with world +y at the bottom row and spans the whole
  [-0.5, 0.5] box, so the image-aligned skip reaches it flipped and 1.7x too large).
- ``separation``: each signal alone (0 -> 0.6) moves CLeBS's basis coefficients; the size of each move in units of
  their spread over the test frames and the cosines between the moves of two signals (``--clebs RUN`` measures
  a ``train-clebs`` run's f_e instead of the weights' own).

    python tools/diagnose_expression_control.py WEIGHTS DATASET [--clips N] [--only SECTION ...] [--clebs RUN]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from export3d_cli.face.blendshapes import BLENDSHAPE_INDEX
from export3d_cli.metrics.expression import EXPRESSION_SIGNALS, expression_signal
from export3d_cli.metrics.face_measurement import FaceMeter
from export3d_cli.metrics.image_quality import to_uint8_frames
from export3d_cli.models.generator import SourceFeatures
from export3d_cli.models.weights_io import load_model
from export3d_cli.training.dataset import ClipDataset

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _measure(meter: FaceMeter, images: torch.Tensor, signal: str) -> list[float | None]:
    values = []
    for image in to_uint8_frames(images):
        face = meter.measure(image)
        values.append(None if face is None else float(expression_signal(face.expression[None], signal)[0]))
    return values


@torch.no_grad()
def response(model, data: ClipDataset, clips, meter: FaceMeter) -> dict:
    result = {}
    for signal, names in EXPRESSION_SIGNALS.items():
        slopes, found = [], 0
        for clip in clips:
            index = int(data.valid_indices(clip.id)[0])
            batch = data.batch(clip.id, [index])
            features = model.encode_source(batch.images)
            expression = batch.expression.repeat(len(LEVELS), 1)
            for row, level in enumerate(LEVELS):
                for name in names:
                    expression[row, BLENDSHAPE_INDEX[name]] = level
            output = model.render(features, expression, batch.camera.repeat(len(LEVELS), 1)).image
            measured = _measure(meter, output, signal)
            found += sum(value is not None for value in measured)
            if measured[0] is not None and measured[-1] is not None:
                slopes.append(measured[-1] - measured[0])
        result[signal] = {
            "slope_median": float(np.median(slopes)) if slopes else None,
            "slope_mean": float(np.mean(slopes)) if slopes else None,
            "sources": len(slopes),
            "face_found": found / (len(clips) * len(LEVELS)),
        }
    return result


@torch.no_grad()
def skip_swap(model, data: ClipDataset, clips, meter: FaceMeter) -> dict:
    rows = []
    for clip in clips:
        valid = data.valid_indices(clip.id)
        jaw = expression_signal(data.params(clip.id).expression[valid], "jaw")
        closed, opened = int(valid[np.argmin(jaw)]), int(valid[np.argmax(jaw)])
        if jaw.max() - jaw.min() < 0.15:
            continue
        batch = data.batch(clip.id, [closed, opened])
        features = model.encode_source(batch.images)
        mixed = SourceFeatures(tokens=features.tokens, skip=features.skip.flip(0), grid=features.grid)
        tokens_mixed = SourceFeatures(tokens=features.tokens.flip(0), skip=features.skip, grid=features.grid)
        # Row 0: β and tokens of the closed frame; skip of the open frame (and row 1 the reverse).
        own = model.render(features, batch.expression, batch.camera).image
        swapped = model.render(mixed, batch.expression, batch.camera).image
        token_swapped = model.render(tokens_mixed, batch.expression, batch.camera).image
        own_jaw, swapped_jaw = _measure(meter, own, "jaw"), _measure(meter, swapped, "jaw")
        token_jaw = _measure(meter, token_swapped, "jaw")
        if None in own_jaw or None in swapped_jaw or None in token_jaw:
            continue
        rows.append(
            {
                "driver_jaw": [float(jaw.min()), float(jaw.max())],
                "output_jaw_own_skip": own_jaw,
                "output_jaw_swapped_skip": swapped_jaw,
                "output_jaw_swapped_tokens": token_jaw,
            }
        )
    closed_gain = [row["output_jaw_swapped_skip"][0] - row["output_jaw_own_skip"][0] for row in rows]
    open_loss = [row["output_jaw_own_skip"][1] - row["output_jaw_swapped_skip"][1] for row in rows]
    if not rows:
        return {"clips": 0}
    return {
        "clips": len(rows),
        "closed_beta_open_skip_minus_own": float(np.mean(closed_gain)),
        "closed_beta_open_tokens_minus_own": float(
            np.mean([r["output_jaw_swapped_tokens"][0] - r["output_jaw_own_skip"][0] for r in rows])
        ),
        "open_beta_own_minus_closed_skip": float(np.mean(open_loss)),
        "driver_jaw_difference": float(np.mean([r["driver_jaw"][1] - r["driver_jaw"][0] for r in rows])),
        "own_skip_output_difference": float(
            np.mean([r["output_jaw_own_skip"][1] - r["output_jaw_own_skip"][0] for r in rows])
        ),
    }


# Adam steps (lr) when fitting a tri-plane directly to one target frame.
FIT_STEPS, FIT_LR = 150, 0.02


def representable(model, data: ClipDataset, clips, meter: FaceMeter, fit_clips: int = 4) -> dict:
    """Can the renderer and SR show the driver's open mouth at all, given the best tri-plane?

    For the open-jaw frame of clips whose jaw spans >= 0.15: the tri-plane G(S_closed, β'_open) is optimised
    directly (G bypassed; decoder and SR frozen) to reproduce the open frame (L1 on the image and the raw image),
    and jawOpen is re-measured. If the fitted tri-plane opens the mouth, the renderer and SR can express it and
    the generator's conditioning is what fails; if not, the bottleneck is downstream of G.
    """
    import torch.nn.functional as F

    from export3d_cli.geometry.camera import split_camera_label

    rows = []
    for clip in clips:
        if len(rows) == fit_clips:
            break
        valid = data.valid_indices(clip.id)
        jaw = expression_signal(data.params(clip.id).expression[valid], "jaw")
        if jaw.max() - jaw.min() < 0.15:
            continue
        closed, opened = int(valid[np.argmin(jaw)]), int(valid[np.argmax(jaw)])
        source = data.batch(clip.id, [closed])
        target = data.batch(clip.id, [opened])
        with torch.no_grad():
            features = model.encode_source(source.images)
            planes = model.generator.generate(features, model.expression_encoder(target.expression), target.expression)
            before = model.render(features, target.expression, target.camera).image
        cam2world, intrinsics = split_camera_label(target.camera)
        raw_target = F.interpolate(target.images, size=model.config.render_resolution, mode="area")
        planes = planes.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([planes], lr=FIT_LR)
        with torch.enable_grad():
            for _ in range(FIT_STEPS):
                rendered = model.renderer(planes, cam2world, intrinsics)
                image = model.superres(rendered.features)
                loss = (image - target.images).abs().mean() + (rendered.features[:, :3] - raw_target).abs().mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            rendered = model.renderer(planes, cam2world, intrinsics)
            fitted = model.superres(rendered.features)
        measured = _measure(meter, torch.cat([target.images, before, fitted]), "jaw")
        if None in measured:
            continue
        rows.append({"target_jaw": measured[0], "generated_jaw": measured[1], "fitted_jaw": measured[2]})
    if not rows:
        return {"clips": 0}
    return {
        "clips": len(rows),
        "rows": rows,
        **{key: float(np.mean([row[key] for row in rows])) for key in ("target_jaw", "generated_jaw", "fitted_jaw")},
    }


def _plane_aligned_skip(model) -> None:
    """Make G read its R/2 skip resampled into plane-0 coordinates (frontal camera, surface at the pivot depth)."""
    import torch.nn.functional as F

    from export3d_cli.camera_conventions import CAMERA_PIVOT, CAMERA_RADIUS, FFHQ_FOCAL

    encode = model.generator.encode_source
    scale = FFHQ_FOCAL / (CAMERA_RADIUS - CAMERA_PIVOT[2])  # image grid units per plane grid unit

    def encode_aligned(source: torch.Tensor) -> SourceFeatures:
        features = encode(source)
        n = features.skip.shape[-1]
        t = (torch.arange(n) + 0.5) / n * 2 - 1  # texel centres, align_corners=False
        gy, gx = torch.meshgrid(t, t, indexing="ij")
        grid = torch.stack([scale * gx, -scale * gy], dim=-1)[None].expand(features.skip.shape[0], -1, -1, -1)
        skip = F.grid_sample(features.skip, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return SourceFeatures(tokens=features.tokens, skip=skip, grid=features.grid)

    model.generator.encode_source = encode_aligned


def pair_fit(model, data: ClipDataset, clips, meter: FaceMeter, steps: int, lr: float, variant: str) -> dict:
    import copy

    import torch.nn.functional as F

    from export3d_cli.metrics.image_quality import psnr

    model = copy.deepcopy(model)
    if variant == "no-lowpass":
        for module in model.modules():
            if hasattr(module, "lowpass"):
                module.lowpass = torch.nn.Identity()
    elif variant == "aligned-skip":
        _plane_aligned_skip(model)
    for clip in clips:
        valid = data.valid_indices(clip.id)
        jaw = expression_signal(data.params(clip.id).expression[valid], "jaw")
        if jaw.max() - jaw.min() >= 0.25:
            break
    else:
        return {"clips": 0}
    target = data.batch(clip.id, [int(valid[np.argmin(jaw)]), int(valid[np.argmax(jaw)])])
    source = target.images[:1].expand(2, -1, -1, -1)
    raw_target = F.interpolate(target.images, size=model.config.render_resolution, mode="area")
    model.expression_encoder.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def probe() -> dict:
        model.eval()
        with torch.no_grad():
            output = model(source, target.expression, target.camera).image
            swapped = model(source, target.expression.flip(0), target.camera).image
        model.train()
        jaw_values = _measure(meter, torch.cat([output, swapped]), "jaw")
        return {
            "psnr": [float(v) for v in psnr(output, target.images)],
            "jaw_closed_open": jaw_values[:2],
            "jaw_with_swapped_expression": jaw_values[2:],
        }

    report = {"clip": clip.id, "target_jaw_closed_open": _measure(meter, target.images, "jaw"), "step0": probe()}
    model.train()
    with torch.enable_grad():
        for _ in range(steps):
            output = model(source, target.expression, target.camera)
            loss = (output.image - target.images).abs().mean() + (output.image_raw - raw_target).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    report[f"step{steps}"] = probe()
    report["final_loss"] = float(loss)
    return report


def pair_difference(data: ClipDataset, pairs: int, seed: int) -> dict:
    clips = data.clips("train")
    rng = np.random.default_rng(seed)
    all_beta = data.measured_expressions(clips)
    deltas = {signal: [] for signal in EXPRESSION_SIGNALS}
    # As ``sample_pairs`` draws them: source and driving frame of one clip, independently.
    for _ in range(pairs):
        clip = clips[int(rng.integers(len(clips)))]
        params = data.params(clip.id)
        valid = data.valid_indices(clip.id)
        source, driving = int(valid[rng.integers(len(valid))]), int(valid[rng.integers(len(valid))])
        for signal in EXPRESSION_SIGNALS:
            pair = expression_signal(params.expression[[source, driving]], signal)
            deltas[signal].append(abs(float(pair[1] - pair[0])))
    return {
        signal: {
            "mean_abs_pair_difference": float(np.mean(values)),
            "dataset_std": float(expression_signal(all_beta, signal).std()),
        }
        for signal, values in deltas.items()
    }


@torch.no_grad()
def embedding(model, data: ClipDataset) -> dict:
    clips = data.clips("test")
    beta = data.measured_expressions(clips)
    embedded = model.expression_encoder(torch.from_numpy(beta).float()).numpy().astype(np.float64)  # [N, d]
    design = np.concatenate([embedded, np.ones((len(embedded), 1))], axis=1)
    readback = {}
    for signal in EXPRESSION_SIGNALS:
        target = expression_signal(beta, signal)
        fitted = design @ np.linalg.lstsq(design, target, rcond=None)[0]
        readback[signal] = float(1 - ((target - fitted) ** 2).sum() / ((target - target.mean()) ** 2).sum())
    return {
        "frames": len(beta),
        "std_over_frames_per_mean_norm": float(
            np.sqrt(embedded.var(axis=0).sum()) / np.linalg.norm(embedded, axis=1).mean()
        ),
        "linear_readback_r2": readback,
    }


@torch.no_grad()
def separation(model, data: ClipDataset, amount: float = 0.6) -> dict:
    """Does CLeBS keep expressions apart? Each signal alone raised from 0 to ``amount`` (other blendshapes 0) moves
    the basis coefficients z = Vᵀβ′; in units of z's spread over the test frames, the size of each move and the
    cosine between the moves of two signals (near ±1: the coefficients cannot tell the two apart linearly)."""
    encoder = model.expression_encoder
    basis = encoder.basis()
    clips = data.clips("test")
    beta = data.measured_expressions(clips)
    spread = (encoder(torch.from_numpy(beta).float()) @ basis).std(dim=0).clamp_min(1e-6)
    moves = {}
    for signal, names in EXPRESSION_SIGNALS.items():
        pair = torch.zeros(2, beta.shape[1])
        for name in names:
            pair[1, BLENDSHAPE_INDEX[name]] = amount
        z = encoder(pair) @ basis
        moves[signal] = (z[1] - z[0]) / spread
    return {
        "size": {signal: float(move.norm()) for signal, move in moves.items()},
        "cosine": {
            f"{a}-{b}": float(torch.nn.functional.cosine_similarity(moves[a], moves[b], dim=0))
            for i, a in enumerate(moves)
            for b in list(moves)[i + 1 :]
        },
    }


def signal_range(data: ClipDataset) -> dict:
    beta = data.measured_expressions(data.manifest.clips)
    return {
        signal: {f"p{q}": float(np.percentile(expression_signal(beta, signal), q)) for q in (5, 50, 95, 99, 100)}
        for signal in EXPRESSION_SIGNALS
    }


SECTIONS = (
    "response", "skip_swap", "representable", "pair_fit", "pair_difference", "range", "embedding", "separation",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("dataset")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--pair-fit-steps", type=int, default=400)
    parser.add_argument("--pair-fit-lr", type=float, default=3e-4)
    parser.add_argument("--pair-fit-variant", choices=("as-is", "no-lowpass", "aligned-skip"), default="as-is")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="measure these sections only"
    )
    parser.add_argument("--clebs", help="a train-clebs run whose f_e replaces the weights' own (e.g. for separation)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.weights).eval()
    if args.clebs:
        # Standardisation statistics (coefficient_*) are measured in stage 2 and the bundled weights predate them:
        # only the MLP and the basis are taken; separation is measured in units of the spread either way.
        state = load_file(str(Path(args.clebs) / "clebs" / "expression_encoder.safetensors"))
        state = {key: value for key, value in state.items() if not key.startswith("coefficient_")}
        result = model.expression_encoder.load_state_dict(state, strict=False)
        if result.unexpected_keys or any(not key.startswith("coefficient_") for key in result.missing_keys):
            raise SystemExit(f"{args.clebs}: does not match the weights' expression encoder ({result})")
    data = ClipDataset(args.dataset, resolution=model.config.resolution)
    clips = data.clips("test")[: args.clips]
    with FaceMeter() as meter:
        sections = {
            "response": lambda: response(model, data, clips, meter),
            "skip_swap": lambda: skip_swap(model, data, data.clips("test"), meter),
            "representable": lambda: representable(model, data, data.clips("test"), meter),
            "pair_fit": lambda: pair_fit(
                model, data, data.clips("test"), meter, args.pair_fit_steps, args.pair_fit_lr, args.pair_fit_variant
            ),
            "pair_difference": lambda: pair_difference(data, args.pairs, seed=0),
            "range": lambda: signal_range(data),
            "embedding": lambda: embedding(model, data),
            "separation": lambda: separation(model, data),
        }
        report = {name: sections[name]() for name in args.only}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
