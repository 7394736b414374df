"""Generator training losses (DESIGN §6): L1 on final and raw images, SSIM, density smoothness,
an optional perceptual term and an optional adversarial term.

- SSIM (``metrics.image_quality``): the loss is 1 − SSIM.
- Density smoothness: EG3D's regulariser — densities at random points in the
  tri-plane box and at the same points nudged by a tiny offset should agree.
- Perceptual: L1 between VGG-16 feature maps (conv1_2 … conv5_3). The backbone
  is only built when its weights exist locally as safetensors (nothing is ever
  downloaded); without them the term is off.
- Adversarial: a small patch discriminator with the non-saturating loss; off
  unless given a weight.
- Expression regions (``region_weight``, off by default): L1 inside the grown
  convex hulls of the target's mouth and eyes+brows (from its landmarks), so a
  wrong expression costs as much as it shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export3d_cli.errors import WeightsError
from export3d_cli.models.rendering.triplane_sampler import sample_triplanes

# MediaPipe mesh indices of the regions that carry expression: outer lip contour, each eye, each brow.
MOUTH = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LEFT_BROW = (70, 63, 105, 66, 107)
RIGHT_BROW = (300, 293, 334, 296, 336)
EXPRESSION_REGIONS = (MOUTH, LEFT_EYE + LEFT_BROW, RIGHT_EYE + RIGHT_BROW)
REGION_MARGIN = 0.04  # of the image side: the regions' convex hulls are grown by this much


def expression_region_mask(landmarks: Tensor, resolution: int) -> Tensor:
    """1 inside the grown convex hulls of mouth, eyes+brows, else 0. Shapes: [B, 478, 2] pixels -> [B, 1, R, R]."""
    import cv2

    points = landmarks.detach().float().cpu().numpy()
    grow = max(1, round(REGION_MARGIN * resolution))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    masks = np.zeros((len(points), 1, resolution, resolution), np.float32)
    for index, face in enumerate(points):
        canvas = np.zeros((resolution, resolution), np.uint8)
        for region in EXPRESSION_REGIONS:
            hull = cv2.convexHull(np.round(face[list(region)]).astype(np.int32))
            cv2.fillConvexPoly(canvas, hull, 1)
        masks[index, 0] = cv2.dilate(canvas, kernel)
    return torch.from_numpy(masks)


def expression_region_l1(image: Tensor, target: Tensor, landmarks: Tensor) -> Tensor:
    """Mean L1 over the target's expression regions (``expression_region_mask``); 0 where a batch has none.

    Shapes: image, target [B, 3, R, R], landmarks [B, 478, 2] pixels of the target -> scalar.
    """
    mask = expression_region_mask(landmarks, target.shape[-1]).to(target)  # [B, 1, R, R]
    return (mask * (image - target).abs()).sum() / (3 * mask.sum()).clamp_min(1.0)


def density_smoothness(
    planes: Tensor, decoder: nn.Module, plane_axes: str, box_warp: float, points: int = 1000, offset: float = 0.004
) -> Tensor:
    """EG3D's density regulariser: mean |σ(x) − σ(x + δ)| over random x in the box, |δ| ~ offset·box."""
    n = planes.shape[0]
    x = (torch.rand(n, points, 3, device=planes.device, dtype=planes.dtype) * 2 - 1) * (box_warp / 2)
    nudged = x + torch.randn_like(x) * offset * box_warp
    both = torch.cat([x, nudged], dim=1)  # [N, 2P, 3]
    sigma = decoder(sample_triplanes(planes, both, plane_axes, box_warp)).sigma  # [N, 2P, 1]
    return (sigma[:, :points] - sigma[:, points:]).abs().mean()


# VGG-16 "features" convolutions (torchvision's layout: index of each conv in the Sequential, in/out channels).
_VGG16_CONVS = (
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
    (24, 512, 512),
    (26, 512, 512),
    (28, 512, 512),
)
_VGG16_TAPS = (2, 7, 14, 21, 28)  # conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (after their ReLU)


class PerceptualLoss(nn.Module):
    """L1 between VGG-16 features of two images; weights from a local safetensors file.

    The file holds torchvision's ``vgg16().features`` state dict (keys ``{index}.weight`` / ``{index}.bias``),
    e.g. converted once by a user from a checkpoint they trust.
    """

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from safetensors.torch import load_file

        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: perceptual backbone weights not found")
        try:
            state = load_file(str(path))
        except Exception as error:
            raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error
        layers: dict[str, nn.Module] = {}
        for index, c_in, c_out in _VGG16_CONVS:
            conv = nn.Conv2d(c_in, c_out, 3, padding=1)
            try:
                conv.weight.data.copy_(state[f"{index}.weight"])
                conv.bias.data.copy_(state[f"{index}.bias"])
            except (KeyError, RuntimeError) as error:
                raise WeightsError(f"{path}: not VGG-16 features weights ({error})") from error
            layers[str(index)] = conv
        self.convs = nn.ModuleDict(layers)
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def features(self, image: Tensor) -> list[Tensor]:
        x = ((image + 1) / 2 - self.mean) / self.std
        taps = []
        for index, _, _ in _VGG16_CONVS:
            if index in (5, 10, 17, 24):  # a max-pool precedes these convolutions
                x = F.max_pool2d(x, 2)
            x = F.relu(self.convs[str(index)](x))
            if index in _VGG16_TAPS:
                taps.append(x)
        return taps

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return sum(F.l1_loss(a, b) for a, b in zip(self.features(x), self.features(y), strict=True))


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: strided convolutions to a grid of real/fake logits."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(layers - 1):
            blocks += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.GroupNorm(8, width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        blocks.append(nn.Conv2d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: softplus(−D(G))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
