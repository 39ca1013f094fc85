"""The TRPO step: natural gradient by conjugate gradient, then a KL-bounded line search.

Implements Schulman et al. 2015 (arXiv 1502.05477), Appendix C, with HARL's acceptance rule.
Everything here is plain torch on a list of parameters, so it serves any policy network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rllib_hatrpo.modules.linearization import JVP, Tangents
from rllib_hatrpo.updates.data_parallel import all_reduce_sum

Tensor = torch.Tensor


def flat_grad(
    output: Tensor,
    params: Sequence[torch.nn.Parameter],
    *,
    grad_output: Tensor | None = None,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    """Gradient of a scalar (or the vector-Jacobian product `grad_output`ᵀ d output / dθ) w.r.t.
    `params`, flattened into one vector (zeros where unused)."""
    grads = torch.autograd.grad(
        output,
        params,
        grad_output,
        create_graph=create_graph,
        retain_graph=retain_graph,
        allow_unused=True,
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


def unflatten(flat: Tensor, params: Sequence[torch.nn.Parameter]) -> list[Tensor]:
    """`flat` cut into consecutive pieces shaped like `params` (views, in `flat`'s dtype)."""
    pieces = torch.split(flat, [p.numel() for p in params])
    return [piece.view_as(p) for piece, p in zip(pieces, params, strict=True)]


def set_flat_params(params: Sequence[torch.nn.Parameter], flat: Tensor) -> None:
    """Copies `flat` into `params` in place (bit-exact, keeps the Parameter objects)."""
    with torch.no_grad():
        for p, piece in zip(params, unflatten(flat, params), strict=True):
            p.copy_(piece)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, residual_tol: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """Approximately solves A x = b for symmetric positive-definite A given only x -> A x.

    Returns x and A x; the latter is b − r from the residual CG keeps anyway, so callers
    needing xᵀAx (the TRPO step size) save one more product.
    """
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
    return x, b - r  # residual r = b − A x


Linearized = tuple[Tensor, JVP | None]
"""Distribution inputs evaluated with autograd, and their Jacobian-vector product when the
module provides one (`ActorRLModule.linearize`); None: take J v by reverse-over-reverse."""


def fisher_vector_product(
    dist_inputs: Tensor,
    kl_fn: Callable[[Tensor], Tensor],
    params: Sequence[torch.nn.Parameter],
    damping: float,
    jvp: JVP | None = None,
) -> Callable[[Tensor], Tensor]:
    """Returns v -> (H + damping·I) v, H the Hessian of the mean KL at the old policy.

    `dist_inputs` are the action distribution inputs z(θ) at the current parameters, which must
    be the old policy's; `kl_fn(z)` is this learner's share of the mean KL(π_old ‖ π_z), and the
    products are summed over learners. At π_old the KL is minimal, ∇_z KL = 0, so its Hessian is
    exactly the Gauss-Newton form Jᵀ (∇²_z KL) J with J = dz/dθ (Schulman et al. 2015, App. C).
    Each product is one Jacobian-vector product, a Hessian product on the few distribution
    inputs, and one vector-Jacobian product through the graph of `dist_inputs`.

    J v comes from `jvp` when given (the module's forward-mode product on its kept
    intermediates); otherwise from differentiating Jᵀu, linear in u, along v through a graph
    built once. On HalfCheetah's 4,000 rows and HARL's actor, one thread, the former takes
    57 ms per product, the latter 101 ms (interleaved, medians of five).
    """
    if jvp is None:
        u = torch.zeros_like(dist_inputs, requires_grad=True)
        # Jᵀu is linear in u: differentiating it w.r.t. u along v gives J v
        jt_u = torch.autograd.grad(dist_inputs, params, u, create_graph=True, allow_unused=True)
        used = [i for i, g in enumerate(jt_u) if g is not None]

        def jvp(tangents: Tangents) -> Tensor:
            pieces = [tangents[params[i]] for i in used]
            return torch.autograd.grad([jt_u[i] for i in used], u, pieces, retain_graph=True)[0]

    z = dist_inputs.detach().double().requires_grad_(True)
    kl_grad = torch.autograd.grad(kl_fn(z), z, create_graph=True)[0]

    def fvp(v: Tensor) -> Tensor:
        pieces = unflatten(v, params)
        jv = jvp({p: piece.to(p.dtype) for p, piece in zip(params, pieces, strict=True)})
        mjv = torch.autograd.grad(kl_grad, z, jv.double(), retain_graph=True)[0]  # ∇²_z KL · J v
        hv = flat_grad(dist_inputs, params, grad_output=mjv.to(jv.dtype), retain_graph=True)
        return all_reduce_sum(hv).to(v.dtype) + damping * v  # damped Fisher-vector product

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
    dist_inputs_fn: Callable[[], Tensor],
    surrogate_fn: Callable[[Tensor], Tensor],
    kl_fn: Callable[[Tensor], Tensor],
    *,
    max_kl: float,
    cg_iters: int,
    cg_damping: float,
    line_search_steps: int,
    backtrack_coeff: float,
    accept_ratio: float,
    linearize_fn: Callable[[], Linearized] | None = None,
    fisher_subsample: tuple[Callable[[], Linearized], Callable[[Tensor], Tensor]] | None = None,
    residual_tol: float = 1e-10,
) -> TrustRegionStats:
    """Maximizes `surrogate_fn` subject to mean KL <= `max_kl`, changing `params` in place.

    `dist_inputs_fn()` evaluates the policy's action distribution inputs on the batch at the
    current parameters (π_old at entry), once per trial; `surrogate_fn` and `kl_fn` map them to
    the surrogate and to the mean KL(π_old ‖ π). Both are this learner's share of the batch
    mean (see `data_parallel`; the whole mean with one learner); gradients, Fisher-vector
    products and values are summed over learners, so every learner takes the same step. When
    no backtracked step is acceptable the parameters are restored bit-for-bit.

    `linearize_fn()`, when given, evaluates the same inputs with their Jacobian-vector product
    (see `Linearized`), used for the gradient and the Fisher-vector products.
    `fisher_subsample`, when given, is a pair like (`linearize_fn`, `kl_fn`) on a subset of the
    rows: the Fisher-vector products, and so the step, use that subset only. The Fisher merely
    acts as the step's metric, so a tenth of the data estimates it well enough (Schulman et al.
    2015, App. C); the line search still checks the KL and the improvement on the whole batch.
    """
    params = [p for p in params if p.requires_grad]
    if fisher_subsample is None:
        dist_inputs, jvp = linearize_fn() if linearize_fn is not None else (dist_inputs_fn(), None)
        fisher_inputs, fisher_kl, fisher_jvp = dist_inputs, kl_fn, jvp
    else:
        dist_inputs = dist_inputs_fn()
        (fisher_inputs, fisher_jvp), fisher_kl = fisher_subsample[0](), fisher_subsample[1]
    surrogate_before = surrogate_fn(dist_inputs)
    g = all_reduce_sum(flat_grad(surrogate_before, params, retain_graph=True).double())
    surrogate_before = float(all_reduce_sum(surrogate_before.detach()))
    fvp = fisher_vector_product(fisher_inputs, fisher_kl, params, cg_damping, fisher_jvp)
    step_dir, h_step_dir = conjugate_gradient(fvp, g, cg_iters, residual_tol)  # s ≈ H⁻¹ g
    shs = float(step_dir @ h_step_dir)
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
            dist_inputs = dist_inputs_fn()
            improvement = float(all_reduce_sum(surrogate_fn(dist_inputs))) - surrogate_before
            expected = expected_full * fraction
            kl = float(all_reduce_sum(kl_fn(dist_inputs)))
            if kl <= max_kl and improvement > 0.0 and improvement >= accept_ratio * expected:
                return TrustRegionStats(kl, improvement, expected, i + 1, True)
        set_flat_params(params, old_params)
    # Rejected: the old policy stays, so it moved by zero KL and improved by zero.
    return TrustRegionStats(0.0, 0.0, expected_full, line_search_steps, False)
