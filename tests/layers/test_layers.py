"""Identity at init (adaLN-Zero), EAdaLN = Eq. (5), low-pass filter, Mix-FFN/attention shapes."""

import torch

from export3d_cli.layers import EAdaLN, EAdaLNViTBlock, ExpressionModulation, GaussianLowPass, gaussian_kernel1d


def test_eadaln_block_is_identity_at_init():
    torch.manual_seed(0)
    block = EAdaLNViTBlock(width=32, heads=4, embed_dim=16, spatial_reduction=2)
    x = torch.randn(3, 8 * 8, 32)
    expression = torch.randn(3, 16)
    assert torch.equal(block(x, expression, 8, 8), x)


def test_eadaln_block_uses_expression_once_trained():
    torch.manual_seed(0)
    block = EAdaLNViTBlock(width=32, heads=4, embed_dim=16)
    torch.nn.init.normal_(block.modulation.proj[1].weight, std=0.5)
    x = torch.randn(1, 16, 32)
    a = block(x, torch.randn(1, 16), 4, 4)
    b = block(x, torch.randn(1, 16), 4, 4)
    assert not torch.allclose(a, b), "different expressions must modulate the tokens differently"


def test_eadaln_matches_equation_5():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    shift, scale = torch.randn(2, 8), torch.randn(2, 8)
    ln = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)
    expected = (1 + scale[:, None]) * ln + shift[:, None]
    torch.testing.assert_close(EAdaLN(8)(x, shift, scale), expected, atol=1e-5, rtol=1e-5)
    assert not list(EAdaLN(8).parameters()), "LN inside EAdaLN has no affine of its own"


def test_modulation_is_zero_at_init():
    chunks = ExpressionModulation(embed_dim=7, width=5, chunks=6)(torch.randn(4, 7))
    assert len(chunks) == 6 and all(c.shape == (4, 5) and torch.count_nonzero(c) == 0 for c in chunks)


def test_gaussian_lowpass_preserves_constants_and_smooths_checkerboard():
    k = gaussian_kernel1d(5, 1.0)
    assert abs(float(k.sum()) - 1.0) < 1e-6 and torch.equal(k, k.flip(0))
    lowpass = GaussianLowPass(channels=3, size=5, sigma=1.0)
    flat = torch.full((1, 3, 8, 8), 0.7)
    torch.testing.assert_close(lowpass(flat), flat)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0
    out = lowpass(checker.expand(1, 3, 8, 8).contiguous())
    assert out.abs().max() < 0.2 * checker.abs().max(), "the grid pattern must be strongly attenuated"
    assert not list(lowpass.parameters()) and "kernel" not in lowpass.state_dict()
