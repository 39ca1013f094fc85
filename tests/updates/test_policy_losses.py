"""HAPPO's and HAA2C's losses against hand computations."""

import pytest
import torch

from rllib_hatrpo.updates.policy_losses import haa2c_loss, happo_loss

CLIP = 0.2


def test_happo_loss_hand_computed_branches():
    # rows: (ratio, M, A) chosen to hit each branch of min(r·A, clip(r)·A)
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1], dtype=torch.float64)
    factor = torch.tensor([0.5, 2.0, 1.5, 0.8, 3.0], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 1.0, -2.0, 0.7], dtype=torch.float64)
    # row 0: A>0, r above 1+ε → clipped: min(1.5, 1.2)·1 = 1.2, times M 0.5 → 0.6
    # row 1: A<0, r above 1+ε → unclipped: min(-1.5, -1.2) = -1.5, times M 2 → -3.0
    # row 2: A>0, r below 1−ε → unclipped: min(0.5, 0.8) = 0.5, times M 1.5 → 0.75
    # row 3: A<0, r below 1−ε → clipped: min(-1.0, -1.6) = -1.6, times M 0.8 → -1.28
    # row 4: inside the clip range → r·A = 0.77, times M 3 → 2.31
    expected = -(0.6 - 3.0 + 0.75 - 1.28 + 2.31) / 5
    assert happo_loss(ratio, factor, adv, CLIP).item() == pytest.approx(expected, abs=1e-12)


def test_happo_gradient_vanishes_only_on_clipped_rows():
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1], dtype=torch.float64, requires_grad=True)
    factor = torch.tensor([0.5, 2.0, 1.5, 0.8, 3.0], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 1.0, -2.0, 0.7], dtype=torch.float64)
    happo_loss(ratio, factor, adv, CLIP).backward()
    # d/dr of −M·r·A/n where unclipped, 0 where the clip binds
    expected = torch.tensor([0.0, 2.0 * 1.0, -1.5 * 1.0, 0.0, -3.0 * 0.7], dtype=torch.float64) / 5
    torch.testing.assert_close(ratio.grad, expected)


def test_with_m_one_and_ratio_one_both_losses_are_minus_mean_advantage():
    adv = torch.randn(7, dtype=torch.float64)
    ones = torch.ones(7, dtype=torch.float64)
    assert happo_loss(ones, ones, adv, CLIP).item() == pytest.approx(-adv.mean().item())
    assert haa2c_loss(ones, ones, adv).item() == pytest.approx(-adv.mean().item())


def test_haa2c_loss_is_unclipped():
    ratio = torch.tensor([3.0, 0.1], dtype=torch.float64)
    factor = torch.tensor([0.5, 4.0], dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    assert haa2c_loss(ratio, factor, adv).item() == pytest.approx(-(3.0 - 0.4) / 2)
