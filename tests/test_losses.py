"""Tests of the cosine margin loss against hand-computed values and torch's CosineEmbeddingLoss."""

from __future__ import annotations

import pytest
import torch

from tokenrec_hf.losses import CosineMarginLoss


def test_hand_computed_one_negative():
    loss_fct = CosineMarginLoss(margin=0.1)
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positives = torch.tensor([[3.0, 4.0], [0.0, 5.0]])  # cos 0.6 and 1.0
    negatives = torch.tensor([[[0.8, 0.6]], [[1.0, 0.0]]])  # cos 0.8 and 0.0

    output = loss_fct(z, positives, negatives)

    # Positive costs: 1 - 0.6 = 0.4 and 0. Negative costs: max(0, 0.8 - 0.1) = 0.7 and max(0, 0 - 0.1) = 0.
    assert output.positive_loss.item() == pytest.approx(0.2)
    assert output.negative_loss.item() == pytest.approx(0.35)
    assert output.loss.item() == pytest.approx((0.4 + 0.0 + 0.7 + 0.0) / 4)


def test_hand_computed_two_negatives():
    loss_fct = CosineMarginLoss(margin=0.2)
    z = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[-1.0, 0.0]])  # cos -1, cost 2
    negatives = torch.tensor([[[1.0, 0.0], [0.6, -0.8]]])  # cos 1.0 and 0.6, costs 0.8 and 0.4

    output = loss_fct(z, positives, negatives)

    assert output.positive_loss.item() == pytest.approx(2.0)
    assert output.negative_loss.item() == pytest.approx(0.6)
    assert output.loss.item() == pytest.approx((2.0 + 0.8 + 0.4) / 3)


def test_matches_cosine_embedding_loss():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(5, 8, generator=generator)
    positives = torch.randn(5, 8, generator=generator)
    negatives = torch.randn(5, 3, 8, generator=generator)

    output = CosineMarginLoss(margin=0.15)(z, positives, negatives)

    queries = torch.cat([z, z.repeat_interleave(3, dim=0)])
    items = torch.cat([positives, negatives.reshape(15, 8)])
    targets = torch.cat([torch.ones(5), -torch.ones(15)])
    expected = torch.nn.CosineEmbeddingLoss(margin=0.15)(queries, items, targets)
    assert output.loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_two_dim_negatives_mean_one_each():
    z = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[0.0, 1.0]])

    output = CosineMarginLoss(margin=-0.5)(z, positives, negatives)

    assert output.negative_loss.item() == pytest.approx(0.5)
    assert output.loss.item() == pytest.approx(0.25)


def test_positives_only():
    z = torch.tensor([[1.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0]])

    output = CosineMarginLoss()(z, positives)

    assert output.loss.item() == pytest.approx(1 - 2**-0.5)
    assert output.negative_loss.item() == 0.0


def test_zero_vector_gives_finite_loss():
    z = torch.zeros(1, 4, requires_grad=True)

    output = CosineMarginLoss()(z, torch.ones(1, 4), torch.ones(1, 1, 4))
    output.loss.backward()

    assert torch.isfinite(output.loss)
    assert torch.isfinite(z.grad).all()


def test_gradient_moves_query_toward_positive():
    z = torch.tensor([[1.0, 0.0]], requires_grad=True)
    positives = torch.tensor([[0.0, 1.0]])
    negatives = torch.tensor([[[1.0, 0.0]]])

    CosineMarginLoss(margin=0.1)(z, positives, negatives).loss.backward()

    # Gradient descent steps against the gradient: toward +y (the positive) and away from +x (the negative).
    assert z.grad[0, 1] < 0


@pytest.mark.parametrize(
    ("positives", "negatives", "match"),
    [
        (torch.ones(2, 3), None, r"positive_embeddings has shape \(2, 3\)"),
        (torch.ones(2, 4), torch.ones(3, 1, 4), r"negative_embeddings has shape \(3, 1, 4\)"),
        (torch.ones(2, 4), torch.ones(2, 1, 5), r"expected \[2, n, 4\]"),
    ],
)
def test_shape_mismatch_raises(positives, negatives, match):
    with pytest.raises(ValueError, match=match):
        CosineMarginLoss()(torch.ones(2, 4), positives, negatives)


def test_invalid_margin_raises():
    with pytest.raises(ValueError, match=r"margin=1.5 is invalid"):
        CosineMarginLoss(margin=1.5)
