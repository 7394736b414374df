"""A small model whose outputs visibly depend on its inputs, for pipeline and CLI tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import torch

from export3d_cli.config import preset
from export3d_cli.models import Export3D


def unstandardized_tiny_model_with_planes(seed: int = 0) -> Export3D:
    """The ``tiny`` preset as weights from before CLeBS standardised its coefficients, with (zero) expression
    tri-planes on the CLeBS coefficients: freshly initialised from ``seed``."""
    import dataclasses

    config = preset("tiny")
    config = dataclasses.replace(
        config,
        expression=dataclasses.replace(config.expression, standardize=False),
        generator=dataclasses.replace(config.generator, expression_planes=True),
    )
    torch.manual_seed(seed)
    return Export3D(config)


def sensitive_tiny_model(seed: int = 0) -> Export3D:
    """The ``tiny`` preset, randomly initialised (deterministic for ``seed``), with conditioning strong enough to see.

    Freshly initialised, adaLN-Zero makes the generator ignore β and the nearly flat tri-planes make the camera
    move pixels by a tenth of a level: option tests could not tell one mode from another. So the zero-initialised
    parameters get noise, and the tri-plane output and the CLeBS coefficients are scaled up.
    """
    torch.manual_seed(seed)
    model = Export3D(preset("tiny"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not parameter.any():
                parameter.normal_(0.0, 3.0 if "modulation" in name else 0.5)
        for layer, gain in ((model.generator.to_triplane[-1], 20.0), (model.expression_encoder.coefficients[-1], 30.0)):
            layer.weight.mul_(gain)
            layer.bias.mul_(gain)
    return model.eval()


def saved_tiny_weights(folder: Path, seed: int = 0) -> Path:
    """``sensitive_tiny_model(seed)`` saved as a weights folder (model.safetensors + config.json) for CLI tests."""
    sensitive_tiny_model(seed).save_pretrained(folder)
    return folder
