"""CLeBS: orthonormal basis (Eq. 2), beta' in span(V) (Eq. 3), gradients reach W."""

import pytest
import torch

from export3d_cli.config import ExpressionEncoderConfig
from export3d_cli.models.expression_encoder import CLeBS, DirectExpressionEncoder, build_expression_encoder


def _clebs(n=10, d=64):
    torch.manual_seed(0)
    return CLeBS(ExpressionEncoderConfig(basis_size=n, embed_dim=d, hidden_dim=32))


def test_basis_is_orthonormal():
    clebs = _clebs()
    v = clebs.basis()
    assert v.shape == (64, 10)
    torch.testing.assert_close(v.T @ v, torch.eye(10), atol=1e-5, rtol=0)


def test_basis_stays_orthonormal_after_training_steps():
    clebs = _clebs(n=5, d=16)
    opt = torch.optim.SGD(clebs.parameters(), lr=0.5)
    beta, target = torch.rand(8, 52), torch.randn(8, 16)
    before = clebs.weight.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        (clebs(beta) - target).pow(2).mean().backward()
        opt.step()
    assert not torch.allclose(before, clebs.weight), "W must have moved"
    v = clebs.basis()
    torch.testing.assert_close(v.T @ v, torch.eye(5), atol=1e-5, rtol=0)


def test_output_lies_in_span_of_basis_with_coefficients_lambda():
    clebs = _clebs()
    beta = torch.rand(6, 52)
    out = clebs(beta)
    v = clebs.basis()
    torch.testing.assert_close(v @ (v.T @ out.T), out.T, atol=1e-5, rtol=1e-5)  # projection onto span(V) is identity
    torch.testing.assert_close(out @ v, clebs.coefficients_of(beta), atol=1e-5, rtol=1e-5)  # lambda_i = <beta', v_i>


def test_scaling_one_coefficient_moves_along_one_basis_vector():
    clebs = _clebs()
    lam = clebs.coefficients_of(torch.rand(1, 52))
    bumped = lam.clone()
    bumped[0, 3] += 2.0
    delta = clebs.from_coefficients(bumped) - clebs.from_coefficients(lam)
    torch.testing.assert_close(delta[0], 2.0 * clebs.basis()[:, 3], atol=1e-5, rtol=1e-5)


def test_gradient_reaches_the_learned_weight_through_qr():
    clebs = _clebs()
    clebs(torch.rand(4, 52)).square().sum().backward()
    assert clebs.weight.grad is not None and torch.isfinite(clebs.weight.grad).all()
    assert clebs.weight.grad.abs().sum() > 0


def test_basis_sign_is_canonical():
    clebs = _clebs()
    _, r = torch.linalg.qr(clebs.weight)
    v = clebs.basis()
    # diag of V^T W equals |diag(R)| > 0: each basis vector points along its own column of W
    assert (torch.diagonal(v.T @ clebs.weight) > 0).all()
    torch.testing.assert_close(torch.diagonal(v.T @ clebs.weight), torch.diagonal(r).abs(), atol=1e-5, rtol=1e-5)


def test_direct_ablation_encoder():
    config = ExpressionEncoderConfig(kind="direct", embed_dim=32, hidden_dim=16)
    encoder = build_expression_encoder(config)
    assert isinstance(encoder, DirectExpressionEncoder)
    assert encoder(torch.rand(3, 52)).shape == (3, 32)
    assert isinstance(build_expression_encoder(ExpressionEncoderConfig()), CLeBS)


def test_coefficient_span_is_the_range_over_the_neutral_face_and_single_blendshape_extremes():
    encoder = _clebs(n=6)
    low, high = encoder.coefficient_span()
    probes = torch.cat([torch.zeros(1, encoder.config.expression_dim), torch.eye(encoder.config.expression_dim)])
    with torch.no_grad():
        coefficients = encoder.coefficients_of(probes)
    torch.testing.assert_close(low, coefficients.min(dim=0).values)
    torch.testing.assert_close(high, coefficients.max(dim=0).values)
    assert low.shape == (6,) and bool((low < high).all())


def _standardizing(n=6, d=48):
    return CLeBS(ExpressionEncoderConfig(basis_size=n, embed_dim=d, hidden_dim=32, hidden_layers=2, standardize=True))


def test_standardized_coefficients_have_zero_mean_and_give_beta_prime_unit_rms_over_the_measured_frames():
    torch.manual_seed(0)
    encoder = _standardizing()
    frames = torch.rand(500, 52) * 0.6
    assert encoder.needs_statistics
    encoder.set_statistics(frames)
    assert not encoder.needs_statistics and int(encoder.coefficient_frames) == 500
    with torch.no_grad():
        z = encoder.standardized(encoder.coefficients_of(frames))
        beta_prime = encoder(frames)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=0), torch.ones(6), atol=1e-3, rtol=1e-3)
    # Orthonormal V keeps the norm: |β'|² = |z|², n on average over the frames.
    assert beta_prime.pow(2).sum(dim=1).mean().item() == pytest.approx(6.0 * 499 / 500, rel=1e-3)


def test_without_standardize_beta_prime_is_v_lambda_and_there_are_no_statistics():
    encoder = _clebs(n=6)
    assert not encoder.needs_statistics
    assert "coefficient_mean" not in dict(encoder.named_buffers())
    with pytest.raises(ValueError, match="does not standardise"):
        encoder.set_statistics(torch.rand(4, 52))
    beta = torch.rand(3, 52)
    with torch.no_grad():
        torch.testing.assert_close(encoder(beta), encoder.coefficients_of(beta) @ encoder.basis().T)


def test_statistics_travel_with_the_weights_and_sweeps_still_move_along_one_basis_vector():
    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D

    torch.manual_seed(0)
    model = Export3D(preset("tiny"))
    model.expression_encoder.set_statistics(torch.rand(64, 52))
    state = {name: value.clone() for name, value in model.expression_encoder.state_dict().items()}
    assert {"coefficient_mean", "coefficient_std", "coefficient_frames"} <= set(state)
    again = Export3D(preset("tiny"))
    again.load_state_dict(model.state_dict(), strict=True)
    for name, value in again.expression_encoder.state_dict().items():
        torch.testing.assert_close(value, state[name])
    encoder = again.expression_encoder
    with torch.no_grad():
        own = encoder.coefficients_of(torch.rand(1, 52))
        moved = own.clone()
        moved[0, 2] += 0.3
        step = encoder.from_coefficients(moved) - encoder.from_coefficients(own)
    direction = encoder.basis()[:, 2]
    torch.testing.assert_close(step[0], direction * step[0].dot(direction), atol=1e-5, rtol=0)
