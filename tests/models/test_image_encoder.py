"""Image encoder f_I of Eq. (1) (export3d_cli.models.image_encoder), used only in stage 1."""

from __future__ import annotations

import torch

from export3d_cli.models.image_encoder import LandmarkEncoder


def test_landmark_encoder_sees_shape_not_position_or_size():
    """f_I on landmarks (stage 1): the same face moved and scaled embeds the same; a mouth that opens does not."""
    torch.manual_seed(0)
    encoder = LandmarkEncoder(478, 16).eval()
    face = torch.rand(1, 478, 2) * 100
    moved = face * 1.7 + torch.tensor([30.0, -12.0])
    opened = face.clone()
    opened[0, 14, 1] += 15.0  # one lip point moves
    with torch.no_grad():
        torch.testing.assert_close(encoder(moved), encoder(face), atol=1e-5, rtol=1e-5)
        assert (encoder(opened) - encoder(face)).abs().max() > 1e-3
