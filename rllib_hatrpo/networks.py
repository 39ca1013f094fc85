"""The MLP body shared by actors and the critic (HARL's MLPBase)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def orthogonal_linear(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    """A linear layer with orthogonal weights of the given gain and zero bias."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def build_mlp(in_dim: int, hidden_sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Input LayerNorm, then [Linear → activation → LayerNorm] per hidden size.

    Hidden layers are orthogonally initialized with the activation's recommended gain.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    gain = nn.init.calculate_gain(activation) if activation != "leaky_relu" else math.sqrt(2)
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
    for size in hidden_sizes:
        layers += [
            orthogonal_linear(in_dim, size, gain),
            ACTIVATIONS[activation](),
            nn.LayerNorm(size),
        ]
        in_dim = size
    return nn.Sequential(*layers)
