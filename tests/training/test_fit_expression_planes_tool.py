"""tools/fit_expression_planes.py: the coordinates it gives the planes before fitting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from export3d_cli.config import preset
from export3d_cli.models import Export3D
from export3d_cli.training.dataset import ClipDataset

TOOL = Path(__file__).resolve().parents[2] / "tools" / "fit_expression_planes.py"


def _tool():
    spec = importlib.util.spec_from_file_location("fit_expression_planes", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blendshape_coordinates_are_the_standardised_principal_components_of_the_training_beta(mini_dataset):
    tool = _tool()
    torch.manual_seed(0)
    base = Export3D(preset("tiny")).eval()
    model = tool.with_expression_planes(base, "blendshapes")
    planes = model.generator.expression_planes
    assert planes.reads == "blendshapes"
    data = ClipDataset(mini_dataset.root, resolution=model.config.resolution)
    clips = data.clips("train")
    tool.set_coordinates(model, data, clips)
    beta = torch.from_numpy(data.measured_expressions(clips)).float()
    n = planes.basis.shape[1]
    torch.testing.assert_close(planes.basis.T @ planes.basis, torch.eye(n), atol=1e-5, rtol=0)
    z = planes.coordinates(beta)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(n), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=0), torch.ones(n), atol=1e-3, rtol=0)
    # The first direction is the one along which β varies most: no unit vector beats it.
    centred = beta - beta.mean(dim=0)
    variance = (centred @ planes.basis).var(dim=0)
    assert bool((variance[:-1] >= variance[1:] - 1e-7).all())
    random = torch.nn.functional.normalize(torch.randn(52, 200, generator=torch.Generator().manual_seed(3)), dim=0)
    assert float(variance[0]) >= float((centred @ random).var(dim=0).max())
    # Everything but the planes is the base, bit for bit.
    for name, value in base.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_refitting_on_other_coordinates_starts_the_planes_afresh():
    tool = _tool()
    torch.manual_seed(0)
    clebs = tool.with_expression_planes(Export3D(preset("tiny")), "clebs")
    with torch.no_grad():
        clebs.generator.expression_planes.directions.normal_()
    again = tool.with_expression_planes(clebs, "clebs")
    assert torch.equal(again.generator.expression_planes.directions, clebs.generator.expression_planes.directions)
    other = tool.with_expression_planes(clebs, "blendshapes")
    assert other.generator.expression_planes.reads == "blendshapes"
    assert not other.generator.expression_planes.directions.any()
