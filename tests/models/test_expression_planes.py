"""Expression tri-planes (export3d_cli.models.expression_planes): shared per-texel directions added to G's output."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from export3d_cli.config import ModelConfig, preset
from export3d_cli.errors import UsageError
from export3d_cli.models import Export3D
from export3d_cli.models.expression_planes import ExpressionPlanes
from export3d_cli.models.weights_io import load_model


def tiny_config(expression_planes: bool = True, kind: str = "clebs", coordinates: str = "clebs") -> ModelConfig:
    config = preset("tiny")
    return dataclasses.replace(
        config,
        expression=dataclasses.replace(config.expression, kind=kind),
        generator=dataclasses.replace(
            config.generator, expression_planes=expression_planes, expression_planes_coordinates=coordinates
        ),
    )


def models_with_and_without_planes() -> tuple[Export3D, Export3D]:
    torch.manual_seed(0)
    plain = Export3D(tiny_config(expression_planes=False)).eval()
    with_planes = Export3D(tiny_config()).eval()
    result = with_planes.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert sorted(result.missing_keys) == [
        "generator.expression_planes.basis",
        "generator.expression_planes.coefficient_mean",
        "generator.expression_planes.coefficient_std",
        "generator.expression_planes.directions",
    ]
    return plain, with_planes


def inputs(batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    expression = torch.rand(batch, 52, generator=generator)
    camera = torch.zeros(batch, 25)
    camera[:, :16] = torch.tensor(
        [[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]]
    ).flatten()  # looking at the head from the front
    camera[:, 16:] = torch.tensor([4.26, 0, 0.5, 0, 4.26, 0.5, 0, 0, 1])
    return source, expression, camera


@torch.no_grad()
def test_zero_directions_change_nothing():
    plain, with_planes = models_with_and_without_planes()
    source, expression, camera = inputs()
    a = plain(source.expand(3, -1, -1, -1), expression, camera)
    b = with_planes(source.expand(3, -1, -1, -1), expression, camera)
    torch.testing.assert_close(b.triplane, a.triplane, rtol=0, atol=0)
    torch.testing.assert_close(b.image, a.image, rtol=0, atol=0)


@torch.no_grad()
def test_the_offset_is_the_standardised_coefficients_times_the_directions():
    _, model = models_with_and_without_planes()
    planes = model.generator.expression_planes
    basis = model.expression_encoder.basis()
    frames = model.expression_encoder(torch.rand(200, 52, generator=torch.Generator().manual_seed(2)))
    planes.set_coordinates(basis, frames @ basis)
    z = planes.coordinates(frames)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(z.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=0), torch.ones(z.shape[1]), atol=1e-4, rtol=0)
    planes.directions.normal_()
    embedding = frames[:2]
    expected = torch.einsum("bn,nkchw->bkchw", planes.coordinates(embedding), planes.directions)
    torch.testing.assert_close(planes(embedding), expected)
    _, expression, _ = inputs(batch=2)
    source_features = model.encode_source(inputs()[0])
    beta = model.expression_encoder(expression)
    model.generator.expression_planes = None
    without = model.generator.generate(source_features, beta)
    model.generator.expression_planes = planes
    torch.testing.assert_close(model.generator.generate(source_features, beta), without + planes(beta))


@torch.no_grad()
def test_planes_make_the_tri_plane_follow_an_expression_that_g_ignores():
    """G's modulation is zero-initialised (adaLN-Zero), so a fresh G gives the same tri-plane for every β; a
    direction on one coefficient makes the tri-plane move with exactly that coefficient."""
    _, model = models_with_and_without_planes()
    planes = model.generator.expression_planes
    basis = model.expression_encoder.basis()
    planes.set_coordinates(basis, torch.randn(50, basis.shape[1]))
    features = model.encode_source(inputs()[0])
    beta = model.expression_encoder(inputs(batch=2, seed=5)[1])
    same = model.generator.generate(features, beta)
    torch.testing.assert_close(same[0], same[1])  # G alone: β makes no difference
    planes.directions[1].normal_()
    moved = model.generator.generate(features, beta)
    z = planes.coordinates(beta)
    torch.testing.assert_close(moved[0] - moved[1], (z[0, 1] - z[1, 1]) * planes.directions[1], atol=1e-5, rtol=1e-4)


def test_weights_with_planes_round_trip(tmp_path):
    _, model = models_with_and_without_planes()
    with torch.no_grad():
        model.generator.expression_planes.directions.normal_()
        basis = model.expression_encoder.basis()
        model.generator.expression_planes.set_coordinates(basis, torch.randn(20, basis.shape[1]))
    model.save_pretrained(tmp_path / "weights")
    loaded = load_model(tmp_path / "weights").eval()
    assert loaded.config.generator.expression_planes
    source, expression, camera = inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(source.expand(3, -1, -1, -1), expression, camera).image,
            model(source.expand(3, -1, -1, -1), expression, camera).image,
        )


def test_planes_need_the_clebs_basis():
    with pytest.raises(UsageError, match="expression_planes needs the CLeBS"):
        tiny_config(kind="direct")


def test_module_shapes():
    planes = ExpressionPlanes(input_dim=8, count=3, plane_shape=(3, 4, 5, 5))
    assert planes(torch.zeros(2, 8)).shape == (2, 3, 4, 5, 5)


def blendshape_planes_model() -> Export3D:
    torch.manual_seed(0)
    model = Export3D(tiny_config(coordinates="blendshapes")).eval()
    planes = model.generator.expression_planes
    assert planes.reads == "blendshapes" and planes.basis.shape == (52, model.config.expression.basis_size)
    return model


def test_unknown_plane_coordinates_are_refused():
    with pytest.raises(UsageError, match="expression_planes_coordinates must be one of clebs, blendshapes"):
        tiny_config(coordinates="pixels")


@torch.no_grad()
def test_blendshape_planes_follow_the_blendshape_g_ignores_and_need_it():
    """Planes on β's coordinates move the tri-plane with the smile alone — through β, not β′ — and ``generate``
    refuses to guess β when it is not given."""
    model = blendshape_planes_model()
    planes = model.generator.expression_planes
    smile = torch.zeros(52, 1)
    smile[44, 0] = smile[45, 0] = 2**-0.5  # mouthSmileLeft, mouthSmileRight
    n = planes.basis.shape[1]
    planes.set_coordinates(torch.cat([smile, torch.zeros(52, n - 1)], dim=1), torch.randn(30, n))
    planes.directions[0].normal_()
    features = model.encode_source(inputs()[0])
    expression = torch.zeros(2, 52)
    expression[1, 44] = expression[1, 45] = 0.8
    embedding = model.expression_encoder(expression)
    moved = model.generator.generate(features, embedding, expression)
    z = planes.coordinates(expression)
    torch.testing.assert_close(moved[1] - moved[0], (z[1, 0] - z[0, 0]) * planes.directions[0], atol=1e-5, rtol=1e-4)
    assert float(z[1, 0] - z[0, 0]) != 0
    with pytest.raises(ValueError, match="read beta"):
        model.generator.generate(features, embedding)


@torch.no_grad()
def test_render_passes_beta_to_blendshape_planes_as_render_embedding_does():
    model = blendshape_planes_model()
    planes = model.generator.expression_planes
    n = planes.basis.shape[1]
    planes.set_coordinates(torch.linalg.qr(torch.randn(52, n)).Q, torch.randn(40, n))
    planes.directions.normal_()
    source, expression, camera = inputs()
    features = model.encode_source(source)
    rendered = model.render(features, expression, camera)
    direct = model.render_embedding(features, model.expression_encoder(expression), camera, expression)
    torch.testing.assert_close(rendered.image, direct.image, rtol=0, atol=0)
    other = model.render(features, expression.flip(0), camera)
    assert (other.triplane - rendered.triplane.flip(0)).abs().max() < 1e-5  # β alone decides the offset


def test_blendshape_planes_round_trip(tmp_path):
    model = blendshape_planes_model()
    with torch.no_grad():
        model.generator.expression_planes.directions.normal_()
        n = model.generator.expression_planes.basis.shape[1]
        model.generator.expression_planes.set_coordinates(torch.linalg.qr(torch.randn(52, n)).Q, torch.randn(9, n))
    model.save_pretrained(tmp_path / "weights")
    loaded = load_model(tmp_path / "weights").eval()
    assert loaded.config.generator.expression_planes_coordinates == "blendshapes"
    source, expression, camera = inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(source.expand(3, -1, -1, -1), expression, camera).image,
            model(source.expand(3, -1, -1, -1), expression, camera).image,
        )
