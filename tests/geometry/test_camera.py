"""EG3D camera conventions (shared/docs/eg3d-conventions.md §2): look-at sampler, label, intrinsics."""

from __future__ import annotations

import math

import pytest
import torch

from export3d_cli.geometry.camera import (
    FFHQ_FOCAL,
    Camera,
    camera_label,
    ffhq_intrinsics,
    look_at_cam2world,
    split_camera_label,
)

RADIUS = 2.7
PIVOT = torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64)


def project(cam2world: torch.Tensor, intrinsics: torch.Tensor, point: torch.Tensor) -> tuple[float, float]:
    """World point -> normalised image coordinates (u right, v down), OpenCV pinhole, float64."""
    rot, origin = cam2world[:3, :3].double(), cam2world[:3, 3].double()
    x, y, z = (rot.T @ (point.double() - origin)).tolist()
    assert z > 0, "point behind the camera"
    k = intrinsics.double()
    return (k[0, 0] * x / z + k[0, 1] * y / z + k[0, 2]).item(), (k[1, 1] * y / z + k[1, 2]).item()


# --------------------------------------------------------------------------- 1. frontal camera


def test_frontal_look_at() -> None:
    c2w = look_at_cam2world(0.0, 0.0)
    assert c2w.shape == (4, 4) and c2w.dtype == torch.float32
    # phi = arccos(0) = pi/2, theta = pi/2: o = (r cos(pi/2), 0, r) -- on the sphere about the origin,
    # not about the pivot (that would put it at z = 2.9).
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([0.0, 0.0, RADIUS]), rtol=0, atol=1e-6)
    # forward = normalize(pivot - o) = (0, 0, -1); right = -normalize(up x f) = -(-1, 0, 0) = (1, 0, 0);
    # down = f x right = (0, -1, 0).
    torch.testing.assert_close(c2w[:3, 2], torch.tensor([0.0, 0.0, -1.0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(c2w[:3, 0], torch.tensor([1.0, 0.0, 0.0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(c2w[:3, 1], torch.tensor([0.0, -1.0, 0.0]), rtol=0, atol=1e-6)
    assert c2w[1, 1] < 0  # column 1 is camera *down*
    assert c2w[3].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_frontal_projection_orientation() -> None:
    cam = Camera.look_at(0.0, 0.0)
    k = cam.intrinsics
    u, v = project(cam.cam2world, k, PIVOT)
    assert u == pytest.approx(0.5, abs=1e-6) and v == pytest.approx(0.5, abs=1e-6)
    u, v = project(cam.cam2world, k, torch.tensor([0.1, 0.0, 0.2]))
    assert u > 0.5 and v == pytest.approx(0.5, abs=1e-6)  # world +x at the image right
    # exact: x_cam = 0.1, z_cam = 2.5 -> u = 0.5 + fx * 0.04
    assert u == pytest.approx(0.5 + FFHQ_FOCAL * 0.1 / 2.5, abs=1e-5)
    u, v = project(cam.cam2world, k, torch.tensor([0.0, 0.1, 0.2]))
    assert v < 0.5 and u == pytest.approx(0.5, abs=1e-6)  # world +y at the image top
    assert v == pytest.approx(0.5 - FFHQ_FOCAL * 0.1 / 2.5, abs=1e-5)


# --------------------------------------------------------------------------- 2. random poses


def test_random_look_at_poses() -> None:
    gen = torch.Generator().manual_seed(0)
    yaw = (torch.rand(64, generator=gen) * 2 - 1) * 0.6
    pitch = (torch.rand(64, generator=gen) * 2 - 1) * 0.4
    c2w = look_at_cam2world(yaw, pitch)
    assert c2w.shape == (64, 4, 4)
    rot, origin = c2w[:, :3, :3].double(), c2w[:, :3, 3].double()
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(origin.norm(dim=-1), torch.full((64,), RADIUS, dtype=torch.float64), rtol=0, atol=1e-5)
    forward = torch.nn.functional.normalize(PIVOT - origin, dim=-1)
    torch.testing.assert_close(rot[:, :, 2], forward, rtol=0, atol=1e-5)
    # Closed form of §2: phi = arccos(-2 pitch / pi), theta = pi/2 + yaw ->
    # o = r (sin(phi) sin(yaw), -2 pitch / pi, sin(phi) cos(yaw)).
    y64, p64 = yaw.double(), pitch.double()
    s = torch.sqrt(1 - (2 * p64 / math.pi) ** 2)
    expected = RADIUS * torch.stack([s * torch.sin(y64), -2 * p64 / math.pi, s * torch.cos(y64)], -1)
    torch.testing.assert_close(origin, expected, rtol=0, atol=1e-5)
    assert torch.all((origin[:, 0] > 0) == (yaw > 0))  # positive yaw -> camera at +x
    assert torch.all((origin[:, 1] < 0) == (pitch > 0))  # positive pitch -> camera below
    # No roll: the right vector is horizontal, and down points downwards.
    torch.testing.assert_close(rot[:, 1, 0], torch.zeros(64, dtype=torch.float64), rtol=0, atol=1e-6)
    assert torch.all(rot[:, 1, 1] < 0)
    assert torch.all(c2w[:, 3] == torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_look_at_broadcasting_and_custom_pivot() -> None:
    c2w = look_at_cam2world(torch.tensor([[0.1], [0.2]]), torch.tensor([0.0, -0.1, 0.3]))
    assert c2w.shape == (2, 3, 4, 4)
    torch.testing.assert_close(c2w[1, 2], look_at_cam2world(0.2, 0.3))
    c2w = look_at_cam2world(0.3, -0.2, radius=1.7, pivot=(0.0, 0.0, 0.0))
    assert c2w[:3, 3].norm().item() == pytest.approx(1.7, abs=1e-6)
    torch.testing.assert_close(c2w[:3, 2], -c2w[:3, 3] / 1.7, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- 3. label


def test_camera_label_layout_and_round_trip() -> None:
    c2w = look_at_cam2world(0.25, -0.15)
    k = torch.tensor([[4.1, 0.01, 0.52], [0.0, 4.3, 0.47], [0.0, 0.0, 1.0]])
    label = camera_label(c2w, k)
    assert label.shape == (25,)
    assert label[3] == c2w[0, 3]  # tx: row-major, first row = R00 R01 R02 tx
    assert label[1] == c2w[0, 1] and label[4] == c2w[1, 0]
    assert label[7] == c2w[1, 3] and label[11] == c2w[2, 3]
    assert label[12:16].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert label[16] == k[0, 0] and label[17] == k[0, 1] and label[18] == k[0, 2]
    assert label[20] == k[1, 1] and label[21] == k[1, 2]
    assert label[16:].tolist() == k.flatten().tolist()
    c2w_back, k_back = split_camera_label(label)
    assert torch.equal(c2w_back, c2w) and torch.equal(k_back, k)


def test_camera_label_batches_and_errors() -> None:
    c2w = look_at_cam2world(torch.linspace(-0.3, 0.3, 6).reshape(2, 3), 0.1)
    label = camera_label(c2w, ffhq_intrinsics())  # intrinsics broadcast over the batch
    assert label.shape == (2, 3, 25)
    assert torch.equal(label[1, 2, :16], c2w[1, 2].flatten())
    assert torch.equal(label[..., 16:], ffhq_intrinsics().flatten().expand(2, 3, 9))
    c2w_back, k_back = split_camera_label(label)
    assert c2w_back.shape == (2, 3, 4, 4) and k_back.shape == (2, 3, 3, 3)
    assert torch.equal(c2w_back, c2w) and torch.equal(k_back, ffhq_intrinsics().expand(2, 3, 3, 3))
    cam = Camera.from_label(label)
    assert torch.equal(cam.label(), label)
    torch.testing.assert_close(cam.origin, c2w[..., :3, 3])
    torch.testing.assert_close(cam.forward, c2w[..., :3, 2])
    with pytest.raises(ValueError):
        split_camera_label(torch.zeros(2, 24))
    with pytest.raises(ValueError):
        split_camera_label(torch.zeros(26))
    with pytest.raises(ValueError):
        camera_label(torch.zeros(3, 4), ffhq_intrinsics())
    with pytest.raises(ValueError):
        camera_label(c2w, torch.zeros(4, 4))


# --------------------------------------------------------------------------- 4. mirroring


def test_mirrored_camera() -> None:
    cam = Camera.look_at(0.35, -0.2)
    mirrored = cam.mirrored()
    flipped = {(0, 1), (0, 2), (1, 0), (2, 0), (0, 3)}
    for r in range(4):
        for c in range(4):
            sign = -1.0 if (r, c) in flipped else 1.0
            assert mirrored.cam2world[r, c].item() == sign * cam.cam2world[r, c].item(), (r, c)
    assert torch.equal(mirrored.intrinsics, cam.intrinsics)
    torch.testing.assert_close(mirrored.cam2world, look_at_cam2world(-0.35, -0.2), rtol=0, atol=1e-5)
    # Batched, and an involution.
    yaw = torch.tensor([-0.5, -0.1, 0.2, 0.6])
    batch = Camera.look_at(yaw, 0.15)
    assert batch.intrinsics.shape == (4, 3, 3)
    torch.testing.assert_close(batch.mirrored().cam2world, look_at_cam2world(-yaw, 0.15), rtol=0, atol=1e-5)
    assert torch.equal(batch.mirrored().mirrored().cam2world, batch.cam2world)


# --------------------------------------------------------------------------- 5. FFHQ intrinsics


def test_ffhq_intrinsics() -> None:
    k = ffhq_intrinsics()
    assert k.shape == (3, 3) and k.dtype == torch.float32
    assert abs(FFHQ_FOCAL - 2985.29 / 700) < 1e-4
    expected = torch.tensor([[4.2647, 0.0, 0.5], [0.0, 4.2647, 0.5], [0.0, 0.0, 1.0]])
    assert torch.equal(k, expected)
    fov = math.degrees(2 * math.atan(0.5 / k[0, 0].item()))
    assert fov == pytest.approx(13.374, abs=1e-3)
    assert ffhq_intrinsics(torch.float64).dtype == torch.float64
    cam = Camera.look_at(0.0, 0.0)
    assert torch.equal(cam.intrinsics, k)
