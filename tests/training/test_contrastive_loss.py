"""Eq. (1) and the InfoNCE objective against hand-computed examples."""

import math

import pytest
import torch

from export3d_cli.training.contrastive_loss import (
    CLeBSContrastiveLoss,
    clebs_contrastive_loss,
    infonce_contrastive_loss,
)


def test_hand_computed_three_by_three():
    # Unit vectors so cos = dot product. Image j, expression k.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    expressions = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    tau = 0.5
    # cos table c[j][k] = <image_j, expression_k>
    c = [[1.0, 0.6, 0.0], [0.0, 0.8, 1.0], [math.sqrt(0.5), 1.4 * math.sqrt(0.5), math.sqrt(0.5)]]
    expected = 0.0
    for k in range(3):
        numerator = math.exp(c[k][k] / tau)
        denominator = sum(math.exp(c[j][k] / tau) for j in range(3) if j != k)
        expected += -math.log(numerator / denominator)
    expected /= 3
    got = clebs_contrastive_loss(images, expressions, tau)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_uses_cosine_not_dot_product():
    images = torch.randn(4, 8)
    expressions = torch.randn(4, 8)
    a = clebs_contrastive_loss(images, expressions, 0.1)
    b = clebs_contrastive_loss(images * 3.0, expressions * torch.tensor([[1.0], [2.0], [5.0], [0.5]]), 0.1)
    torch.testing.assert_close(a, b)


def test_aligned_pairs_give_lower_loss_than_shuffled():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    aligned = clebs_contrastive_loss(x, x + 0.01 * torch.randn_like(x), 0.1)
    shuffled = clebs_contrastive_loss(x, x.roll(1, dims=0), 0.1)
    assert aligned < shuffled


def test_learnable_temperature_gets_gradient_and_is_clamped():
    loss = CLeBSContrastiveLoss(initial_tau=0.1)
    assert loss.tau.item() == pytest.approx(0.1, rel=1e-6)
    value = loss(torch.randn(5, 4), torch.randn(5, 4))
    value.backward()
    assert loss.log_tau.grad is not None and loss.log_tau.grad != 0
    with torch.no_grad():
        loss.log_tau.fill_(10.0)
    assert loss.tau.item() == pytest.approx(1.0)


def test_rejects_single_pair():
    with pytest.raises(ValueError):
        clebs_contrastive_loss(torch.randn(1, 4), torch.randn(1, 4), 0.1)


def test_infonce_hand_computed_three_by_three():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    expressions = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    tau = 0.5
    c = [[1.0, 0.6, 0.0], [0.0, 0.8, 1.0], [math.sqrt(0.5), 1.4 * math.sqrt(0.5), math.sqrt(0.5)]]  # c[j][k]

    def cross_entropy(row_of, k):  # -log softmax over the row, positive included
        row = [row_of(i) / tau for i in range(3)]
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    by_expression = sum(cross_entropy(lambda j, k=k: c[j][k], k) for k in range(3)) / 3  # each β against all frames
    by_image = sum(cross_entropy(lambda k, j=j: c[j][k], j) for j in range(3)) / 3  # each frame against all β
    got = infonce_contrastive_loss(images, expressions, tau)
    assert got.item() == pytest.approx(0.5 * (by_expression + by_image), abs=1e-6)


def test_infonce_is_bounded_below_where_eq_1_is_not():
    # Perfectly separated pairs: as tau shrinks, Eq. (1) falls without limit (so a learnt tau runs to its clamp);
    # InfoNCE approaches 0 from above.
    x = torch.eye(4)
    paper = [clebs_contrastive_loss(x, x, tau).item() for tau in (0.5, 0.1, 0.02)]
    infonce = [infonce_contrastive_loss(x, x, tau).item() for tau in (0.5, 0.1, 0.02)]
    assert paper[0] > paper[1] > paper[2] and paper[2] < -40
    assert infonce[0] > infonce[1] > infonce[2] >= 0 and infonce[2] < 1e-6


def test_the_objective_is_chosen_by_name():
    x, y = torch.randn(6, 8), torch.randn(6, 8)
    assert CLeBSContrastiveLoss(objective="infonce")(x, y).item() == pytest.approx(
        infonce_contrastive_loss(x, y, 0.1).item()
    )
    assert CLeBSContrastiveLoss()(x, y).item() == pytest.approx(clebs_contrastive_loss(x, y, 0.1).item())
    with pytest.raises(ValueError, match="objective"):
        CLeBSContrastiveLoss(objective="clip")
