"""Jacobian-vector products of the MLP at fixed parameters, for the trust-region step.

Conjugate gradient multiplies by the Fisher matrix Jᵀ M J ten times at the same parameters
(J = d outputs / dθ). Taking J v by differentiating the backward graph a second time
(reverse-over-reverse) spends most of its time in LayerNorm's double backward. Keeping what
the forward pass computed anyway (each Linear's input, the activations' slopes, each
LayerNorm's normalized input and 1/σ), J v is two matmuls per Linear and a few elementwise
operations per LayerNorm, and nothing is recomputed between products.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

Tensor = torch.Tensor
Tangents = Mapping[nn.Parameter, Tensor]
"""A direction in parameter space: a tangent shaped like each parameter (missing: zero)."""
JVP = Callable[[Tangents], Tensor]
"""t ↦ J t: the change of a network's outputs along the parameter tangents t."""
LayerStep = Callable[[Tensor | None, Tangents], Tensor | None]
"""One layer's part of J t: (change of its input, t) ↦ change of its output; None is zero."""


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return b if a is None else a if b is None else a + b


def _linear(layer: nn.Linear, x: Tensor) -> tuple[Tensor, LayerStep]:
    x_in, weight = x.detach(), layer.weight.detach()

    def step(dx: Tensor | None, t: Tangents) -> Tensor | None:
        # d(x Wᵀ + b) = x dWᵀ + db + dx Wᵀ
        dw = t.get(layer.weight)
        db = None if layer.bias is None else t.get(layer.bias)
        if dw is None:
            out = None if db is None else db.expand(len(x_in), -1)
            return _add(out, None if dx is None else dx @ weight.t())
        out = x_in @ dw.t() if db is None else torch.addmm(db, x_in, dw.t())
        return out if dx is None else out.addmm_(dx, weight.t())

    return layer(x), step


def _elementwise(layer: nn.Module, x: Tensor) -> tuple[Tensor, LayerStep]:
    y = layer(x)
    with torch.no_grad():
        if isinstance(layer, nn.ReLU):
            slope = (x > 0).to(x.dtype)
        elif isinstance(layer, nn.Tanh):
            slope = 1.0 - y * y  # tanh' = 1 − tanh²
        else:
            slope = torch.where(x > 0, 1.0, layer.negative_slope).to(x.dtype)

    def step(dx: Tensor | None, t: Tangents) -> Tensor | None:
        return None if dx is None else dx * slope

    return y, step


def _layer_norm(layer: nn.LayerNorm, x: Tensor) -> tuple[Tensor, LayerStep]:
    if len(layer.normalized_shape) != 1 or not layer.elementwise_affine:
        raise TypeError(f"only affine LayerNorms over the last dimension are supported: {layer}")
    # LayerNorm's own kernel (as `layer(x)` calls it), which also returns the rows' μ and 1/σ
    y, mean, rstd = torch.native_layer_norm(
        x, layer.normalized_shape, layer.weight, layer.bias, layer.eps
    )
    with torch.no_grad():
        x_hat = (x - mean) * rstd
        scale = rstd * layer.weight  # γ/σ per row and feature

    def step(dx: Tensor | None, t: Tangents) -> Tensor | None:
        dgamma, dbeta = t.get(layer.weight), t.get(layer.bias)
        out = _add(
            None if dgamma is None else x_hat * dgamma,
            None if dbeta is None else dbeta.expand_as(x_hat),
        )
        if dx is None:
            return out
        # d(x̂γ + β) with x̂ = (x − μ)/σ: (dx − mean(dx) − x̂·mean(dx·x̂)) γ/σ
        centered = dx - dx.mean(-1, keepdim=True) - x_hat * (dx * x_hat).mean(-1, keepdim=True)
        return _add(out, centered * scale)

    return y, step


_LINEARIZERS: dict[type, Callable[..., tuple[Tensor, LayerStep]]] = {
    nn.Linear: _linear,
    nn.ReLU: _elementwise,
    nn.Tanh: _elementwise,
    nn.LeakyReLU: _elementwise,
    nn.LayerNorm: _layer_norm,
}


def linearize_layers(layers: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, JVP]:
    """Applies `layers` in sequence to `x` (with autograd, as their own forward does) and
    returns the output and its J t at the current parameters.

    The layers may be Linear, LayerNorm (affine, over the last dimension), ReLU, Tanh or
    LeakyReLU: the layers `networks.build_mlp` makes. `x` (rows × features) is taken as
    constant.
    """
    steps = []
    for layer in layers:
        linearizer = _LINEARIZERS.get(type(layer))
        if linearizer is None:
            raise TypeError(f"no Jacobian-vector product for layer {layer}")
        x, step = linearizer(layer, x)
        steps.append(step)
    zeros = x.detach().new_zeros(())

    def jvp(tangents: Tangents) -> Tensor:
        d = None
        for step in steps:
            d = step(d, tangents)
        return zeros.expand(x.shape) if d is None else d

    return x, jvp
