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


NETWORK_DEFAULTS = {"hidden_sizes": [128, 128, 128], "activation": "relu", "layer_norm": True}


def build_mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    layer_norm: bool = True,
) -> nn.Sequential:
    """Input LayerNorm, then [Linear → activation → LayerNorm] per hidden size (HARL's body);
    without `layer_norm`, a plain MLP.

    Hidden layers are orthogonally initialized with the activation's recommended gain.
    Per-sample LayerNorm discards the scale of very low-dimensional inputs (a 1-D input
    always normalizes to 0), so small single-agent tasks are better off without it.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    gain = nn.init.calculate_gain(activation) if activation != "leaky_relu" else math.sqrt(2)
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if layer_norm else []
    for size in hidden_sizes:
        layers += [orthogonal_linear(in_dim, size, gain), ACTIVATIONS[activation]()]
        if layer_norm:
            layers.append(nn.LayerNorm(size))
        in_dim = size
    return nn.Sequential(*layers)
