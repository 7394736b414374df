"""Adapt a model to one photo: a short fine-tune on the photo and its personal set (DESIGN §10).

Every pair has the photo as its source and one image of the personal set (the photo itself, or the photo warped
to an expression or turned to a nearby camera) as its target, driven by that image's measured β and camera —
what ``animate`` does with a driver, on targets whose appearance is known. What is fitted: the person's own
tri-planes (``personal_triplanes``, at a tri-plane's learning rate), the renderer's decoder and SR (fine-tuned);
G only with ``tune_generator``. Frozen, its tri-planes for the whole set are computed once. Tuning G instead of
fitting personal tri-planes was measured first (skimage's astronaut, 200 steps): 23.3 dB on the photo, but the
output's smile was gone and jawOpen 0.8 moved nothing — G's output gains little detail in a few hundred steps
(``docs/expression-control-diagnosis.md``). CLeBS is frozen (β′ must keep meaning what it meant for the base model)
and so are the buffers (T_EMA, the expression statistics), so the model runs in eval mode throughout. The photo is
in every batch: it is the only target that is not a warp.

The identity judges of ``metrics`` (dlib's ResNet) are deliberately not used as a loss here: they measure the
result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_cli.metrics.image_quality import ssim
from export3d_cli.models.export3d import Export3D
from export3d_cli.personalization.personal_set import PersonalSet
from export3d_cli.personalization.tuning_config import TuningConfig

BASE_TUNED_MODULES = ("renderer", "superres")  # fine-tuned; G too with ``tune_generator``
StepCallback = Callable[[int, int, float], None]  # (step, steps, loss)


@dataclass
class TuningResult:
    losses: list[float] = field(default_factory=list)  # per step
    seconds: float = 0.0


def tuned_base_parameters(model: Export3D) -> dict[str, torch.nn.Parameter]:
    """The base model's parameters personalisation may change, by state-dict name (G's only with
    ``tune_generator``; the file stores only those that did change)."""
    modules = (*BASE_TUNED_MODULES, "generator")
    return {name: p for name, p in model.named_parameters() if name.split(".", 1)[0] in modules}


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """uint8 [N, R, R, 3] -> float [N, 3, R, R] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def reconstruction_loss(output, target: Tensor, ssim_weight: float) -> Tensor:
    """L1 on the image and on the raw (neural-rendered) image, plus SSIM: the stage-2 losses without density."""
    raw_target = F.interpolate(target, size=output.image_raw.shape[-2:], mode="area")
    return (
        (output.image - target).abs().mean()
        + (output.image_raw - raw_target).abs().mean()
        + ssim_weight * (1.0 - ssim(output.image, target).mean())
    )


def tune(
    model: Export3D, personal_set: PersonalSet, config: TuningConfig, on_step: StepCallback | None = None
) -> TuningResult:
    """Fine-tune ``model`` in place on ``personal_set`` (index 0 = the photo), giving it personal tri-planes.

    Deterministic for a fixed seed. With G frozen (the default) its tri-planes for the set are computed once.
    """
    from export3d_cli.personalization.personal_triplanes import attach

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = next(model.parameters()).device
    images = crops_to_tensor(personal_set.crops).to(device)  # [N, 3, R, R]
    expression = torch.from_numpy(personal_set.expression).float().to(device)
    camera = torch.from_numpy(personal_set.camera).float().to(device)
    source = images[:1]
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        embeddings = model.expression_encoder(expression)  # [N, d]
        features = model.encode_source(source)
        cached = None if config.tune_generator else _generator_planes(model, features, embeddings, expression)
    inputs = expression if config.coordinates == "blendshapes" else embeddings  # what the person's directions read
    personal = attach(model, inputs[0], inputs, config.coordinates)
    tuned = [p for name, p in tuned_base_parameters(model).items() if config.tune_generator or name[:9] != "generator"]
    for parameter in [*tuned, *personal.parameters()]:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(
        [
            {"params": tuned, "lr": config.lr},
            {"params": list(personal.parameters()), "lr": config.triplane_lr},
        ]
    )
    result = TuningResult()
    start = time.perf_counter()
    others = np.arange(1, len(images))
    with torch.enable_grad():
        for step in range(1, config.steps + 1):
            picks = [0]
            if len(others):
                picks += list(rng.choice(others, size=config.batch - 1, replace=len(others) < config.batch - 1))
            index = torch.tensor(picks, device=device)
            if cached is None:
                output = model.render_embedding(
                    model.encode_source(source), embeddings[index], camera[index], expression[index]
                )
            else:
                output = model.render_planes(cached[index] + personal(inputs[index]), camera[index])
            loss = reconstruction_loss(output, images[index], config.ssim_weight)
            if config.direction_decay > 0:
                loss = loss + config.direction_decay * personal.directions.square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            result.losses.append(value)
            if on_step is not None:
                on_step(step, config.steps, value)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    result.seconds = time.perf_counter() - start
    return result


def _generator_planes(model: Export3D, features, embeddings: Tensor, expression: Tensor, chunk: int = 8) -> Tensor:
    """G(S, β′) + T_EMA (+ expression tri-planes) for every set image [N, 3, C, H, W], without the personal term;
    embeddings β′ [N, d], expression β [N, E]."""
    return torch.cat(
        [
            model.generator.generate(features, embeddings[i : i + chunk], expression[i : i + chunk])
            for i in range(0, len(embeddings), chunk)
        ]
    )
