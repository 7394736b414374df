"""Generator training losses against independent computations: SSIM, PSNR, density smoothness, VGG-16
perceptual loss (random weights in torchvision's layout), patch discriminator and the GAN losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.torch import save_file
from torch import nn

from export3d_cli.config import preset
from export3d_cli.errors import WeightsError
from export3d_cli.metrics.image_quality import psnr, ssim
from export3d_cli.models.export3d import Export3D
from export3d_cli.training.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    density_smoothness,
    discriminator_loss,
    generator_adversarial_loss,
)

# torchvision's vgg16().features: numbers are conv output channels, "M" a 2x2 max-pool; a ReLU follows every conv.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_TAP_RELUS = (3, 8, 15, 22, 29)  # the ReLUs after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3


def _images(seed: int, shape=(2, 3, 32, 32)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1


def _reference_ssim(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Wang et al. 2004 on [0, 1] images [B, C, H, W]: Gaussian-weighted local statistics (reflect-padded), mean map."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    pad = size // 2

    def local_mean(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
        patches = sliding_window_view(padded, (size, size), axis=(2, 3))  # [B, C, H, W, size, size]
        return np.einsum("bchwij,ij->bchw", patches, window)

    mx, my = local_mean(x), local_mean(y)
    sxx = local_mean(x * x) - mx**2
    syy = local_mean(y * y) - my**2
    sxy = local_mean(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    score = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return score.reshape(len(x), -1).mean(axis=1)


def test_ssim_of_an_image_with_itself_is_one():
    x = _images(0)
    torch.testing.assert_close(ssim(x, x), torch.ones(2), atol=1e-5, rtol=0)


def test_ssim_of_unrelated_noise_is_near_zero():
    assert ssim(_images(1), _images(2)).max() < 0.1


def test_ssim_matches_a_reference_implementation():
    x = _images(3, (2, 3, 24, 20))
    # y: a noisy, darker copy of x, so the score is well away from both 0 and 1.
    y = (0.7 * x + 0.3 * _images(4, (2, 3, 24, 20))).clamp(-1, 1)
    expected = _reference_ssim((x.double().numpy() + 1) / 2, (y.double().numpy() + 1) / 2)
    assert expected.min() > 0.2 and expected.max() < 0.95
    np.testing.assert_allclose(ssim(x, y).numpy(), expected, atol=1e-5)


def test_ssim_is_differentiable():
    x = _images(5).requires_grad_()
    (1 - ssim(x, _images(6)).mean()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_psnr_is_minus_ten_log10_of_the_mse_on_the_unit_range():
    x, y = _images(7), _images(8)
    a, b = (x.double().numpy() + 1) / 2, (y.double().numpy() + 1) / 2
    expected = [-10 * math.log10(float(np.mean((a[i] - b[i]) ** 2))) for i in range(2)]
    np.testing.assert_allclose(psnr(x, y).numpy(), expected, rtol=1e-5)


def test_psnr_of_a_known_offset():
    x = torch.zeros(1, 3, 8, 8)
    y = x + 0.2  # 0.1 on the [0, 1] scale -> mse 0.01 -> 20 dB
    assert psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)


def test_psnr_clamps_images_to_the_valid_range():
    x, y = _images(9), _images(10)
    torch.testing.assert_close(psnr(x * 3, y), psnr((x * 3).clamp(-1, 1), y))


@pytest.fixture(scope="module")
def tiny_model() -> Export3D:
    torch.manual_seed(0)
    return Export3D(preset("tiny"))


def test_density_smoothness_is_small_for_constant_planes_and_larger_for_random_ones(tiny_model):
    decoder, renderer = tiny_model.renderer.decoder, tiny_model.renderer.config
    torch.manual_seed(1)
    with torch.no_grad():
        constant = density_smoothness(
            torch.full((2, 3, 32, 16, 16), 0.7), decoder, renderer.plane_axes, renderer.box_warp, points=2000
        )
        rough = density_smoothness(
            torch.randn(2, 3, 32, 16, 16) * 2, decoder, renderer.plane_axes, renderer.box_warp, points=2000
        )
    # Constant planes give the same density everywhere in the box, except where a point's bilinear lookup
    # reaches the zero padding at the planes' border (align_corners=False).
    assert float(constant) < 0.2 * float(rough)
    assert float(rough) > 0


def test_density_smoothness_without_offset_is_zero(tiny_model):
    decoder, renderer = tiny_model.renderer.decoder, tiny_model.renderer.config
    planes = torch.randn(2, 3, 32, 16, 16)
    with torch.no_grad():
        value = density_smoothness(planes, decoder, renderer.plane_axes, renderer.box_warp, offset=0.0)
    assert float(value) == 0.0


def test_density_smoothness_trains_the_decoder(tiny_model):
    decoder, renderer = tiny_model.renderer.decoder, tiny_model.renderer.config
    decoder.zero_grad(set_to_none=True)
    density_smoothness(torch.randn(1, 3, 32, 16, 16), decoder, renderer.plane_axes, renderer.box_warp).backward()
    assert decoder.fc0.weight.grad is not None and decoder.fc0.weight.grad.abs().sum() > 0
    decoder.zero_grad(set_to_none=True)


def _reference_vgg16() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for entry in VGG16_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, entry, 3, padding=1), nn.ReLU()]
            channels = entry
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    """Random VGG-16 features weights (He-scaled, so activations stay finite through 13 layers)."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in _reference_vgg16().state_dict().items():
        if key.endswith("weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=generator) * math.sqrt(2 / fan_in)
        else:
            state[key] = torch.randn(value.shape, generator=generator) * 0.01
    assert sorted({int(k.split(".")[0]) for k in state}) == list(VGG16_CONV_INDICES)
    return state


@pytest.fixture(scope="module")
def vgg_weights(vgg_state, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vgg") / "vgg16_features.safetensors"
    save_file(vgg_state, str(path))
    return str(path)


def test_perceptual_loss_is_zero_for_equal_images_and_positive_otherwise(vgg_weights):
    loss = PerceptualLoss(vgg_weights)
    x, y = _images(11), _images(12)
    assert float(loss(x, x)) == 0.0
    assert float(loss(x, y)) > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_perceptual_loss_equals_l1_between_reference_vgg_features(vgg_weights, vgg_state):
    reference = _reference_vgg16()
    reference.load_state_dict(vgg_state, strict=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def taps(image: torch.Tensor) -> list[torch.Tensor]:
        x, out = ((image + 1) / 2 - mean) / std, []
        for index, layer in enumerate(reference):
            x = layer(x)
            if index in VGG16_TAP_RELUS:
                out.append(x)
        return out

    x, y = _images(13), _images(14)
    with torch.no_grad():
        expected = sum(F.l1_loss(a, b) for a, b in zip(taps(x), taps(y), strict=True))
        got = PerceptualLoss(vgg_weights)(x, y)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_perceptual_loss_passes_gradients_to_the_image(vgg_weights):
    x = _images(15).requires_grad_()
    PerceptualLoss(vgg_weights)(x, _images(16)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_perceptual_weights_missing_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        PerceptualLoss(tmp_path / "nope.safetensors")


def test_perceptual_weights_with_wrong_keys_or_shapes_are_a_weights_error(vgg_state, tmp_path):
    renamed = dict(vgg_state)
    renamed["1.weight"] = renamed.pop("0.weight")
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(WeightsError, match="VGG-16"):
        PerceptualLoss(tmp_path / "renamed.safetensors")
    reshaped = dict(vgg_state)
    reshaped["28.weight"] = torch.zeros(512, 256, 3, 3)
    save_file(reshaped, str(tmp_path / "reshaped.safetensors"))
    with pytest.raises(WeightsError, match="VGG-16"):
        PerceptualLoss(tmp_path / "reshaped.safetensors")


def test_perceptual_weights_that_are_not_safetensors_are_a_weights_error(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        PerceptualLoss(path)


@pytest.mark.parametrize(("layers", "size", "grid"), [(3, 64, 8), (2, 32, 8), (3, 32, 4)])
def test_patch_discriminator_gives_a_grid_of_logits(layers, size, grid):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(channels=16, layers=layers)
    logits = discriminator(_images(17, (2, 3, size, size)))
    assert logits.shape == (2, 1, grid, grid)
    assert torch.isfinite(logits).all()


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def test_gan_losses_are_the_non_saturating_softplus_losses():
    real = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]]]])
    fake = torch.tensor([[[[-3.0, 1.5], [0.25, -0.5]]]])
    r, f = real.double().numpy(), fake.double().numpy()
    assert generator_adversarial_loss(fake).item() == pytest.approx(float(np.mean(_softplus(-f))), rel=1e-6)
    expected = float(np.mean(_softplus(-r)) + np.mean(_softplus(f)))
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # Confident, correct logits cost almost nothing; confident wrong ones cost about |logit|.
    assert discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0)).item() < 1e-6
    assert generator_adversarial_loss(torch.full((4,), -20.0)).item() == pytest.approx(20.0, rel=1e-6)


def _frontal_landmarks(resolution: int) -> torch.Tensor:
    from export3d_cli.face.alignment import alignment_template
    from export3d_cli.face.head_pose import look_at_pose

    mesh = alignment_template(look_at_pose(0.0, 0.0).label(), resolution)  # [468, 2]
    return torch.from_numpy(np.concatenate([mesh, np.repeat(mesh[:1], 10, axis=0)])[None].astype(np.float32))


def test_expression_region_mask_covers_mouth_eyes_and_brows_only():
    from export3d_cli.training.losses import EXPRESSION_REGIONS, expression_region_mask

    landmarks = _frontal_landmarks(128)
    mask = expression_region_mask(landmarks, 128)[0, 0]
    assert mask.shape == (128, 128)
    for region in EXPRESSION_REGIONS:
        for x, y in landmarks[0, list(region)].round().long().tolist():
            assert mask[y, x] == 1
    assert 0.03 < float(mask.mean()) < 0.35  # a few parts of the face, not the whole image
    assert mask[:10].sum() == 0 and mask[-10:].sum() == 0  # forehead-top and chin-bottom rows of the crop
    # Moving the face moves the mask with it.
    shifted = expression_region_mask(landmarks + torch.tensor([10.0, 6.0]), 128)[0, 0]
    assert torch.equal(shifted[6:, 10:], mask[:-6, :-10])


def test_expression_region_l1_sees_errors_inside_the_regions_only():
    from export3d_cli.training.losses import expression_region_l1, expression_region_mask

    landmarks = _frontal_landmarks(64).repeat(2, 1, 1)
    mask = expression_region_mask(landmarks, 64)  # [2, 1, 64, 64]
    target = torch.zeros(2, 3, 64, 64)
    outside = (1 - mask) * 0.7  # a large error everywhere but the regions
    assert expression_region_l1(target + outside, target, landmarks).item() == 0.0
    inside = mask * 0.25
    inside[1] *= 3  # the second image errs 3x as much: the mean over both is 0.5
    assert expression_region_l1(target + inside, target, landmarks).item() == pytest.approx(0.5, rel=1e-6)
    # No face in the batch's landmarks' regions (all off the image): no NaN, no cost.
    assert expression_region_l1(target + 1, target, torch.full_like(landmarks, -500.0)).item() == 0.0
