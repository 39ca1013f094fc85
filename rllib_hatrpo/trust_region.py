"""The TRPO step: natural gradient by conjugate gradient, then a KL-bounded line search.

Implements Schulman et al. 2015 (arXiv 1502.05477), Appendix C, with HARL's acceptance rule.
Everything here is plain torch on a list of parameters, so it serves any policy network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rllib_hatrpo.data_parallel import all_reduce_sum

Tensor = torch.Tensor


def flat_grad(
    output: Tensor,
    params: Sequence[torch.nn.Parameter],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """Gradient of a scalar w.r.t. `params`, flattened into one vector (zeros where unused)."""
    grads = torch.autograd.grad(
        output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def get_flat_params(params: Sequence[torch.nn.Parameter]) -> Tensor:
    """A detached copy of `params` as one vector."""
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


def set_flat_params(params: Sequence[torch.nn.Parameter], flat: Tensor) -> None:
    """Copies `flat` into `params` in place (bit-exact, keeps the Parameter objects)."""
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, residual_tol: float = 1e-10
) -> Tensor:
    """Approximately solves A x = b for symmetric positive-definite A given only x -> A x."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)  # CG step length: alpha = r'r / p'Ap
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p  # new conjugate direction: beta = r'r_new / r'r_old
        rr = rr_new
    return x


def fisher_vector_product(
    kl_fn: Callable[[], Tensor], params: Sequence[torch.nn.Parameter], damping: float
) -> Callable[[Tensor], Tensor]:
    """Returns v -> (H + damping·I) v, H the Hessian of the mean KL at the current params.

    Pearlmutter's trick: H v = d/dθ (∇θ KL · v), so each product costs two backward passes.
    `kl_fn` returns this learner's share of the mean KL; the products are summed over learners.
    """
    kl_grad = flat_grad(kl_fn(), params, create_graph=True)

    def fvp(v: Tensor) -> Tensor:
        hv = all_reduce_sum(flat_grad(kl_grad @ v.to(kl_grad.dtype), params, retain_graph=True))
        return hv.to(v.dtype) + damping * v  # damped Fisher-vector product (H + λI) v

    return fvp


@dataclass(frozen=True)
class TrustRegionStats:
    """What one trust-region step did, reported per agent in the result dict."""

    mean_kl: float
    surrogate_improvement: float
    expected_improvement: float
    line_search_steps: int
    step_accepted: bool


def trust_region_step(
    params: Sequence[torch.nn.Parameter],
    surrogate_fn: Callable[[], Tensor],
    kl_fn: Callable[[], Tensor],
    *,
    max_kl: float,
    cg_iters: int,
    cg_damping: float,
    line_search_steps: int,
    backtrack_coeff: float,
    accept_ratio: float,
    residual_tol: float = 1e-10,
) -> TrustRegionStats:
    """Maximizes `surrogate_fn` subject to mean KL <= `max_kl`, changing `params` in place.

    `surrogate_fn` and `kl_fn` re-evaluate the current parameters each call and return this
    learner's share of the batch mean (see `data_parallel`; the whole mean with one learner);
    gradients, Fisher-vector products and values are summed over learners, so every learner
    takes the same step. When no backtracked step is acceptable the parameters are restored
    bit-for-bit.
    """
    params = [p for p in params if p.requires_grad]
    surrogate_before = surrogate_fn()
    g = all_reduce_sum(flat_grad(surrogate_before, params).double())
    surrogate_before = float(all_reduce_sum(surrogate_before.detach()))
    fvp = fisher_vector_product(kl_fn, params, cg_damping)
    step_dir = conjugate_gradient(fvp, g, cg_iters, residual_tol)  # s ≈ H⁻¹ g
    shs = float(step_dir @ fvp(step_dir))
    old_params = get_flat_params(params)
    if not (math.isfinite(shs) and shs > 0.0):
        return TrustRegionStats(0.0, 0.0, 0.0, 0, False)
    # largest step inside the KL ball: s·sqrt(2δ / sᵀHs)
    full_step = step_dir * math.sqrt(2.0 * max_kl / shs)
    expected_full = float(g @ full_step)  # first-order improvement of the full step: gᵀ·step

    with torch.no_grad():
        for i in range(line_search_steps):
            fraction = backtrack_coeff**i
            set_flat_params(params, old_params + fraction * full_step.to(old_params.dtype))
            improvement = float(all_reduce_sum(surrogate_fn())) - surrogate_before
            expected = expected_full * fraction
            kl = float(all_reduce_sum(kl_fn()))
            if kl <= max_kl and improvement > 0.0 and improvement >= accept_ratio * expected:
                return TrustRegionStats(kl, improvement, expected, i + 1, True)
        set_flat_params(params, old_params)
    # Rejected: the old policy stays, so it moved by zero KL and improved by zero.
    return TrustRegionStats(0.0, 0.0, expected_full, line_search_steps, False)
