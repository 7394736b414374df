"""The fused Triton renderer agrees with ``render_triplanes`` (run in Triton's interpreter on the CPU)."""

from __future__ import annotations

import os

import pytest
import torch

# Before Triton reads it: kernels defined afterwards run in the interpreter, on CPU tensors.
os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="Triton is installed with the gpu extra")

from export3d_cli.geometry.camera import Camera
from export3d_cli.models.rendering import TriplaneDecoder, render_triplanes
from export3d_cli.models.rendering.fused_renderer import (
    fused_renderer_applies,
    render_triplanes_fused,
)

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("TRITON_INTERPRET was set to something else before this module", allow_module_level=True)


def _scene(n: int = 2, size: int = 8, channels: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    planes = torch.randn(n, 3, channels, size, size) * 5.0
    decoder = TriplaneDecoder(channels, 64)
    with torch.no_grad():  # a density that reaches opacity ~1 on some rays and stays thin on others
        decoder.fc1.bias[0] = 0.5
    camera = Camera.look_at(torch.linspace(0.35, -0.25, n), torch.linspace(-0.15, 0.2, n))
    return planes, decoder, camera.cam2world, camera.intrinsics


def _both(planes, decoder, cam2world, intrinsics, seed: int = 5, **options):
    results = []
    for render in (render_triplanes, render_triplanes_fused):
        torch.manual_seed(seed)  # the same jitter and importance draws for both
        with torch.no_grad():
            results.append(render(planes, decoder, cam2world, intrinsics, **options))
    return results


def _assert_agree(reference, fused, atol: float = 2e-5) -> None:
    for name in ("features", "depth", "opacity"):
        expected, got = getattr(reference, name), getattr(fused, name)
        assert got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("plane_axes", ["orthogonal", "eg3d"])
@pytest.mark.parametrize("stochastic", [False, True])
def test_fused_render_matches_the_reference_path(plane_axes, stochastic):
    scene = _scene()
    options = dict(resolution=8, samples=6, importance_samples=6, plane_axes=plane_axes, stochastic=stochastic)
    reference, fused = _both(*scene, **options)
    _assert_agree(reference, fused)
    # Not trivially equal: the rays see different things.
    assert reference.opacity.std() > 0.05 and reference.features.std() > 0.05


def test_fused_render_without_importance_samples_and_with_box_warp():
    reference, fused = _both(*_scene(n=1, seed=3), resolution=8, samples=9, importance_samples=0, box_warp=0.8)
    _assert_agree(reference, fused)


def test_points_off_the_planes_read_zeros_as_the_reference_does():
    planes, decoder, cam2world, intrinsics = _scene(n=1, seed=4)
    # A wide field of view with a small box: many samples fall outside the [-1, 1] cube.
    wide = intrinsics.clone()
    wide[:, 0, 0] = wide[:, 1, 1] = 0.6
    reference, fused = _both(planes, decoder, cam2world, wide, resolution=8, samples=6, importance_samples=6,
                             box_warp=0.5)  # fmt: skip
    _assert_agree(reference, fused)


def test_bfloat16_planes_are_read_in_bfloat16_and_computed_in_float32():
    planes, decoder, cam2world, intrinsics = _scene(n=1, seed=6)
    low = planes.to(torch.bfloat16)
    options = dict(resolution=8, samples=6, importance_samples=6)
    with torch.no_grad():
        reference = render_triplanes(low.float(), decoder, cam2world, intrinsics, **options)
        fused = render_triplanes_fused(low, decoder, cam2world, intrinsics, **options)
    _assert_agree(reference, fused)
    assert fused.features.dtype == torch.float32


def test_the_fused_path_is_taken_only_on_cuda_without_autograd():
    planes, decoder, *_ = _scene(n=1)
    assert not fused_renderer_applies(planes, decoder)  # CPU
    assert not fused_renderer_applies(planes, TriplaneDecoder(24, 64))  # does not fit the kernel's tiles
