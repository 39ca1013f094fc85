"""Per-agent policy objectives of the first-order heterogeneous-agent methods."""

from __future__ import annotations

import torch


def happo_loss(
    ratio: torch.Tensor, factor: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """HAPPO's clipped objective, negated: −mean(M · min(r·A, clip(r, 1 ± ε)·A)).

    Kuba et al. 2022, eq. 15; M is a constant and is not clipped.
    """
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    return -(factor * torch.min(unclipped, clipped)).mean()


def haa2c_loss(ratio: torch.Tensor, factor: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """HAA2C's objective, negated: −mean(M · r · A), the plain multi-agent policy gradient."""
    return -(factor * ratio * advantages).mean()
