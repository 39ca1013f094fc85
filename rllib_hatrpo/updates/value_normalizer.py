"""Running normalization of value targets (PopArt-style statistics, as HARL's ValueNorm)."""

from __future__ import annotations

import torch
from torch import nn

from rllib_hatrpo.updates.data_parallel import global_mean


class ValueNormalizer(nn.Module):
    """Debiased running mean and mean-square of the value targets.

    The statistics are buffers, so they live in the critic's state dict and travel with every
    checkpoint. The critic predicts normalized values; GAE uses de-normalized ones.
    """

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, min_var: float = 1e-2):
        super().__init__()
        self.beta = beta
        self.epsilon = epsilon
        self.min_var = min_var
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Debiased mean and variance (variance clamped from below)."""
        denom = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / denom  # bias-corrected EMA, as in Adam
        var = (self.running_mean_sq / denom - mean**2).clamp(min=self.min_var)
        return mean, var

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Folds one batch of targets (all learners' rows) into the running statistics."""
        x = x.detach().double()
        b = self.beta
        self.running_mean.mul_(b).add_((1 - b) * global_mean(x))  # m ← β m + (1 − β) mean(x)
        self.running_mean_sq.mul_(b).add_((1 - b) * global_mean(x**2))  # q ← β q + (1−β) mean(x²)
        self.debiasing_term.mul_(b).add_(1 - b)  # d ← β d + (1 − β)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return ((x.double() - mean) / var.sqrt()).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return (x.double() * var.sqrt() + mean).to(x.dtype)
