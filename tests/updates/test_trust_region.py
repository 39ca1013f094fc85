"""Tests of the TRPO machinery in rllib_hatrpo.updates.trust_region against independent
computations.

Everything numeric runs in float64. Reference values come from dense linear algebra
(torch.linalg.solve, torch.autograd.functional.hessian) on closed-form KL / log-prob formulas
written here, never from the functions under test.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence

from rllib_hatrpo.modules.linearization import linearize_layers
from rllib_hatrpo.modules.networks import build_mlp
from rllib_hatrpo.updates.trust_region import (
    TrustRegionStats,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    get_flat_params,
    set_flat_params,
    trust_region_step,
)

F64 = torch.float64
OBS_DIM, ACT_DIM, N_ACTIONS = 3, 2, 4


# The trust-region settings most tests use (δ 0.01, 10 CG iterations, damping 0.1, ...).
DEFAULT_STEP = dict(
    max_kl=0.01,
    cg_iters=10,
    cg_damping=0.1,
    line_search_steps=10,
    backtrack_coeff=0.5,
    accept_ratio=0.5,
)


def _random_spd(n: int, gen: torch.Generator, cond_shift: float = 1.0) -> torch.Tensor:
    q = torch.randn(n, n, generator=gen, dtype=F64)
    return q @ q.T / n + cond_shift * torch.eye(n, dtype=F64)


def _flat(params) -> torch.Tensor:
    """Reference flattening (independent of get_flat_params)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


# --------------------------------------------------------------------------------------------
# Tiny policies and their closed-form references
# --------------------------------------------------------------------------------------------


class GaussianPolicy(nn.Module):
    """Linear(3 -> 2) mean plus a state-independent log_std parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(OBS_DIM, ACT_DIM).double()
        self.log_std = nn.Parameter(0.3 * torch.randn(ACT_DIM, dtype=F64))

    def param_list(self) -> list[nn.Parameter]:
        return [self.mean.weight, self.mean.bias, self.log_std]

    def dist(self, obs: torch.Tensor) -> Normal:
        return _normal(self.dist_inputs(obs))

    def dist_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """[mean, log_std] per row, RLlib's layout of a diagonal Gaussian's inputs."""
        mu = self.mean(obs)
        return torch.cat([mu, self.log_std.expand_as(mu)], dim=-1)


def _normal(dist_inputs: torch.Tensor) -> Normal:
    mu, log_std = dist_inputs.chunk(2, dim=-1)
    return Normal(mu, log_std.exp())


def _gauss_unflatten(theta: torch.Tensor):
    nw = ACT_DIM * OBS_DIM
    w = theta[:nw].reshape(ACT_DIM, OBS_DIM)
    b = theta[nw : nw + ACT_DIM]
    log_std = theta[nw + ACT_DIM :]
    return w, b, log_std


def _gauss_mu_logstd(theta: torch.Tensor, obs: torch.Tensor):
    w, b, log_std = _gauss_unflatten(theta)
    return obs @ w.T + b, log_std


def _gauss_kl(mu0, ls0, mu1, ls1) -> torch.Tensor:
    """Closed-form KL(N(mu0, e^ls0) || N(mu1, e^ls1)) summed over action dims, per row."""
    return (
        ls1 - ls0 + (torch.exp(2 * ls0) + (mu0 - mu1) ** 2) / (2 * torch.exp(2 * ls1)) - 0.5
    ).sum(-1)


def _gauss_logp(mu, ls, actions) -> torch.Tensor:
    z = (actions - mu) / torch.exp(ls)
    return (-0.5 * z**2 - ls - 0.5 * math.log(2 * math.pi)).sum(-1)


class CategoricalPolicy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Linear(OBS_DIM, N_ACTIONS).double()

    def param_list(self) -> list[nn.Parameter]:
        return [self.logits.weight, self.logits.bias]

    def dist(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs))


def _cat_logits(theta: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    nw = N_ACTIONS * OBS_DIM
    return obs @ theta[:nw].reshape(N_ACTIONS, OBS_DIM).T + theta[nw:]


def _cat_kl(logits0, logits1) -> torch.Tensor:
    lp0 = torch.log_softmax(logits0, -1)
    lp1 = torch.log_softmax(logits1, -1)
    return (lp0.exp() * (lp0 - lp1)).sum(-1)


# --------------------------------------------------------------------------------------------
# flat_grad / get_flat_params / set_flat_params
# --------------------------------------------------------------------------------------------


def test_flat_grad_matches_per_parameter_grads_and_zero_fills_unused():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(2, 3, dtype=F64))
    unused = nn.Parameter(torch.randn(4, dtype=F64))
    b = nn.Parameter(torch.randn(3, dtype=F64))
    # f = sum(a^2 * b) : df/da = 2 a * b (broadcast over rows), df/db = sum_rows a^2
    f = (a**2 * b).sum()
    g = flat_grad(f, [a, unused, b])
    expected = torch.cat(
        [(2 * a * b).detach().reshape(-1), torch.zeros(4, dtype=F64), (a**2).sum(0).detach()]
    )
    assert g.shape == (6 + 4 + 3,)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-14)


def test_flat_grad_create_graph_allows_second_derivative():
    x = nn.Parameter(torch.tensor([1.5, -0.5], dtype=F64))
    g = flat_grad((x**3).sum(), [x], create_graph=True)  # 3 x^2
    h = flat_grad(g.sum(), [x])  # 6 x
    torch.testing.assert_close(h, 6 * x.detach(), rtol=0, atol=1e-14)


def test_get_set_flat_params_round_trip_is_bit_exact_and_keeps_parameter_objects():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    params = list(net.parameters())
    ids = [id(p) for p in params]
    before = [p.detach().clone() for p in params]

    flat = get_flat_params(params)
    assert flat.shape == (sum(p.numel() for p in params),)
    assert torch.equal(flat, _flat(params))
    # a detached copy: mutating it must not touch the parameters
    assert not flat.requires_grad
    flat.add_(1.0)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)

    new = torch.randn(flat.numel(), dtype=F64)
    set_flat_params(params, new)
    assert [id(p) for p in net.parameters()] == ids
    assert torch.equal(_flat(net.parameters()), new)
    # slicing order: first parameter gets the first numel entries, reshaped like it
    assert torch.equal(params[0].detach(), new[: params[0].numel()].view_as(params[0]))

    set_flat_params(params, get_flat_params(before))
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)


# --------------------------------------------------------------------------------------------
# conjugate_gradient
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 20, 50])
def test_conjugate_gradient_solves_random_spd_system(n):
    gen = torch.Generator().manual_seed(100 + n)
    a = _random_spd(n, gen)
    b = torch.randn(n, generator=gen, dtype=F64)
    x, ax = conjugate_gradient(lambda v: a @ v, b, iters=2 * n, residual_tol=1e-28)
    x_ref = torch.linalg.solve(a, b)
    torch.testing.assert_close(x, x_ref, rtol=1e-9, atol=1e-10)
    assert torch.linalg.norm(a @ x - b) < 1e-9
    torch.testing.assert_close(ax, a @ x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [5, 20])
def test_conjugate_gradient_with_exactly_n_iterations(n):
    # in exact arithmetic CG terminates in n steps; a well-conditioned system gets close
    gen = torch.Generator().manual_seed(7 + n)
    a = _random_spd(n, gen, cond_shift=2.0)
    b = torch.randn(n, generator=gen, dtype=F64)
    x, _ = conjugate_gradient(lambda v: a @ v, b, iters=n, residual_tol=1e-28)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-7, atol=1e-8)


def test_conjugate_gradient_few_iterations_reduce_error_monotonically():
    n = 50
    gen = torch.Generator().manual_seed(3)
    a = _random_spd(n, gen, cond_shift=0.05)  # ill-conditioned enough to need many steps
    b = torch.randn(n, generator=gen, dtype=F64)
    x_ref = torch.linalg.solve(a, b)

    def a_norm_err(x):
        e = x - x_ref
        return float(e @ a @ e)

    # x_0 = 0, so the initial residual is b and the initial A-norm error is b'A^-1 b
    prev_err = a_norm_err(torch.zeros(n, dtype=F64))
    init_res = float(torch.linalg.norm(b))
    for k in range(1, 11):
        x, ax = conjugate_gradient(lambda v: a @ v, b, iters=k, residual_tol=0.0)
        # the A x CG returns (b − its tracked residual) is the true product, however early it stops
        torch.testing.assert_close(ax, a @ x, rtol=0, atol=1e-9)
        err = a_norm_err(x)
        # CG minimizes the A-norm error over a growing Krylov space: non-increasing in k
        assert err <= prev_err * (1 + 1e-12)
        assert float(torch.linalg.norm(a @ x - b)) < init_res
        prev_err = err
    assert prev_err < 0.5 * a_norm_err(torch.zeros(n, dtype=F64))


def test_conjugate_gradient_one_iteration_is_steepest_descent_step():
    gen = torch.Generator().manual_seed(4)
    a = _random_spd(6, gen)
    b = torch.randn(6, generator=gen, dtype=F64)
    x, _ = conjugate_gradient(lambda v: a @ v, b, iters=1)
    alpha = (b @ b) / (b @ a @ b)
    torch.testing.assert_close(x, alpha * b, rtol=1e-14, atol=0)


def test_conjugate_gradient_zero_rhs_and_zero_iterations():
    calls = []

    def matvec(v):
        calls.append(v)
        return v

    x, ax = conjugate_gradient(matvec, torch.zeros(4, dtype=F64), 10)
    assert torch.equal(x, torch.zeros(4)) and torch.equal(ax, torch.zeros(4))
    assert calls == []  # already converged: no product needed
    b = torch.ones(3, dtype=F64)
    x, ax = conjugate_gradient(matvec, b, 0)
    assert torch.equal(x, torch.zeros(3, dtype=F64)) and torch.equal(ax, torch.zeros(3))


# --------------------------------------------------------------------------------------------
# fisher_vector_product
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_equals_kl_hessian_gaussian(damping):
    torch.manual_seed(10)
    pol = GaussianPolicy()
    params = pol.param_list()
    obs = torch.randn(7, OBS_DIM, dtype=F64)
    with torch.no_grad():
        mu_old = pol.mean(obs).clone()
        ls_old = pol.log_std.clone()
        old = pol.dist(obs)

    def kl_fn(dist_inputs):
        return kl_divergence(old, _normal(dist_inputs)).sum(-1).mean()

    theta0 = _flat(params)

    def kl_of_theta(theta):
        mu, ls = _gauss_mu_logstd(theta, obs)
        return _gauss_kl(mu_old, ls_old, mu, ls).mean()

    hess = torch.autograd.functional.hessian(kl_of_theta, theta0)
    assert hess.shape == (theta0.numel(), theta0.numel())

    fvp = fisher_vector_product(pol.dist_inputs(obs), kl_fn, params, damping)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):  # several products on the same graph
        v = torch.randn(theta0.numel(), generator=gen, dtype=F64)
        torch.testing.assert_close(fvp(v), hess @ v + damping * v, rtol=0, atol=1e-10)

    # the log_std block of the Gaussian Fisher is 2·I and decoupled from the mean block
    nm = ACT_DIM * OBS_DIM + ACT_DIM
    e = torch.zeros(theta0.numel(), dtype=F64)
    e[nm] = 1.0
    expected = torch.zeros_like(e)
    expected[nm] = 2.0 + damping
    torch.testing.assert_close(fvp(e), expected, rtol=0, atol=1e-10)
    # parameters untouched by the products
    assert torch.equal(_flat(params), theta0)


@pytest.mark.parametrize("damping", [0.0, 0.05])
def test_fisher_vector_product_equals_kl_hessian_categorical(damping):
    torch.manual_seed(20)
    pol = CategoricalPolicy()
    params = pol.param_list()
    obs = torch.randn(9, OBS_DIM, dtype=F64)
    with torch.no_grad():
        logits_old = pol.logits(obs).clone()

    def kl_fn(logits):
        return kl_divergence(Categorical(logits=logits_old), Categorical(logits=logits)).mean()

    theta0 = _flat(params)
    hess = torch.autograd.functional.hessian(
        lambda th: _cat_kl(logits_old, _cat_logits(th, obs)).mean(), theta0
    )
    # independent closed form of that Hessian: the Fisher E_s[J^T (diag(p) - p p^T) J]
    p = torch.softmax(logits_old, -1)
    fisher = torch.zeros_like(hess)
    for i in range(obs.shape[0]):
        cov = torch.diag(p[i]) - torch.outer(p[i], p[i])
        jac = torch.cat(
            [
                torch.kron(torch.eye(N_ACTIONS, dtype=F64), obs[i][None]),
                torch.eye(N_ACTIONS, dtype=F64),
            ],
            dim=1,
        )  # d logits / d theta
        fisher += jac.T @ cov @ jac
    fisher /= obs.shape[0]
    torch.testing.assert_close(hess, fisher, rtol=0, atol=1e-12)

    fvp = fisher_vector_product(pol.logits(obs), kl_fn, params, damping)
    gen = torch.Generator().manual_seed(21)
    for _ in range(3):
        v = torch.randn(theta0.numel(), generator=gen, dtype=F64)
        torch.testing.assert_close(fvp(v), hess @ v + damping * v, rtol=0, atol=1e-10)


class LayerNormGaussianPolicy(nn.Module):
    """HARL's actor body (LayerNorm, then Linear, ReLU, LayerNorm per layer) with a Gaussian
    head, plus a parameter the outputs do not depend on."""

    def __init__(self) -> None:
        super().__init__()
        self.body = build_mlp(OBS_DIM, [5, 4]).double()
        for layer in self.body:  # LayerNorm affine parameters away from their identity init
            if isinstance(layer, nn.LayerNorm):
                nn.init.normal_(layer.weight, 1.0, 0.3)
                nn.init.normal_(layer.bias, 0.0, 0.3)
        self.head = nn.Linear(4, ACT_DIM).double()
        self.log_std = nn.Parameter(0.2 * torch.randn(ACT_DIM, dtype=F64))
        self.unused = nn.Parameter(torch.randn(3, dtype=F64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mu = self.head(self.body(obs))
        return torch.cat([mu, self.log_std.expand_as(mu)], dim=-1)


@pytest.mark.parametrize("jvp_source", ["reverse-over-reverse", "linearize_layers"])
def test_fisher_vector_product_equals_kl_hessian_through_a_layer_norm_mlp(jvp_source):
    torch.manual_seed(30)
    pol = LayerNormGaussianPolicy()
    names, params = zip(*pol.named_parameters(), strict=True)
    obs = torch.randn(11, OBS_DIM, dtype=F64)
    with torch.no_grad():
        old = _normal(pol(obs))

    def kl_fn(dist_inputs):
        return kl_divergence(old, _normal(dist_inputs)).sum(-1).mean()

    def kl_of_theta(theta):
        pieces = torch.split(theta, [p.numel() for p in params])
        weights = {n: t.view_as(p) for n, t, p in zip(names, pieces, params, strict=True)}
        return kl_fn(torch.func.functional_call(pol, weights, (obs,)))

    hess = torch.autograd.functional.hessian(kl_of_theta, _flat(params))
    if jvp_source == "linearize_layers":  # the actors' forward-mode product on kept intermediates
        mu, body_jvp = linearize_layers([*pol.body, pol.head], obs)
        dist_inputs = torch.cat([mu, pol.log_std.expand_as(mu)], dim=-1)

        def jvp(tangents):
            d_mu = body_jvp(tangents)
            return torch.cat([d_mu, tangents[pol.log_std].expand_as(d_mu)], dim=-1)

        fvp = fisher_vector_product(dist_inputs, kl_fn, params, 0.0, jvp)
    else:
        fvp = fisher_vector_product(pol(obs), kl_fn, params, 0.0)
    gen = torch.Generator().manual_seed(31)
    for _ in range(3):
        v = torch.randn(len(hess), generator=gen, dtype=F64)
        torch.testing.assert_close(fvp(v), hess @ v, rtol=0, atol=1e-10)
    # the unused parameter has zero rows in the Hessian and in the products
    start = sum(p.numel() for p in params[: names.index("unused")])
    rows = slice(start, start + pol.unused.numel())
    assert torch.count_nonzero(hess[rows]) == 0
    assert torch.count_nonzero(fvp(torch.ones(len(hess), dtype=F64))[rows]) == 0


# --------------------------------------------------------------------------------------------
# trust_region_step: quadratic toys where everything is closed form
# --------------------------------------------------------------------------------------------


def _toy(n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = _random_spd(n, gen)
    g = torch.randn(n, generator=gen, dtype=F64)
    theta0 = torch.randn(n, generator=gen, dtype=F64)
    theta = nn.Parameter(theta0.clone())
    return a, g, theta0, theta


def _closed_form_full_step(a, g, max_kl):
    a_inv_g = torch.linalg.solve(a, g)
    return math.sqrt(2 * max_kl / float(g @ a_inv_g)) * a_inv_g


TOY_KW = dict(cg_iters=20, cg_damping=0.0, backtrack_coeff=0.5, residual_tol=1e-28)


def test_trust_region_step_linear_surrogate_quadratic_kl_takes_closed_form_step():
    a, g, theta0, theta = _toy()
    max_kl = 0.02

    def kl_fn(z):  # the "distribution inputs" of these toys are the parameters themselves
        d = z - theta0
        return 0.5 * d @ a @ d  # Hessian at theta0 is exactly A

    stats = trust_region_step(
        [theta],
        lambda: theta,
        lambda z: g @ z,
        kl_fn,
        max_kl=max_kl,
        line_search_steps=10,
        accept_ratio=0.5,
        **TOY_KW,
    )
    full = _closed_form_full_step(a, g, max_kl)
    assert stats.step_accepted
    # KL(full) = δ in exact arithmetic; rounding may push it an ulp above δ, in which case the
    # first backtracked step is taken (test_trust_region_step_backtracks_until_kl_fits pins the
    # exact step count where the margins are wide).
    kl_full = float(0.5 * full @ a @ full)
    assert kl_full == pytest.approx(max_kl, rel=1e-12)
    assert stats.line_search_steps in (1, 2)
    frac = TOY_KW["backtrack_coeff"] ** (stats.line_search_steps - 1)
    step = theta.detach() - theta0
    torch.testing.assert_close(step, frac * full, rtol=1e-10, atol=1e-12)
    # linear surrogate: the improvement equals the first-order expectation exactly
    assert stats.surrogate_improvement == pytest.approx(float(g @ (frac * full)), rel=1e-10)
    assert stats.expected_improvement == pytest.approx(float(g @ (frac * full)), rel=1e-10)
    assert stats.mean_kl == pytest.approx(max_kl * frac**2, rel=1e-10)
    assert stats.mean_kl <= max_kl


def test_trust_region_step_backtracks_until_kl_fits():
    # KL = ½q + c q² with q = dᵀAd: Hessian at theta0 is still A, but the full step overshoots.
    a, g, theta0, theta = _toy(n=4, seed=1)
    max_kl, c, b = 0.1, 100.0, 0.5

    def kl_fn(z):  # the "distribution inputs" of these toys are the parameters themselves
        d = z - theta0
        q = d @ a @ d
        return 0.5 * q + c * q**2

    stats = trust_region_step(
        [theta],
        lambda: theta,
        lambda z: g @ z,
        kl_fn,
        max_kl=max_kl,
        line_search_steps=10,
        accept_ratio=0.5,
        **TOY_KW,
    )
    # KL(f · full) = f²δ + 4c f⁴ δ² since fullᵀ A full = 2δ
    expected_k = next(
        i + 1 for i in range(10) if (b**i) ** 2 * max_kl + 4 * c * (b**i) ** 4 * max_kl**2 <= max_kl
    )
    assert expected_k == 3  # the toy is designed to need two backtracks
    assert stats.step_accepted
    assert stats.line_search_steps == expected_k
    f = b ** (expected_k - 1)
    full = _closed_form_full_step(a, g, max_kl)
    torch.testing.assert_close(theta.detach() - theta0, f * full, rtol=1e-10, atol=1e-12)
    assert stats.mean_kl == pytest.approx(f**2 * max_kl + 4 * c * f**4 * max_kl**2, rel=1e-9)
    assert stats.surrogate_improvement == pytest.approx(float(g @ (f * full)), rel=1e-10)
    assert stats.expected_improvement == pytest.approx(float(g @ (f * full)), rel=1e-10)


def test_trust_region_step_rejects_when_kl_never_fits_and_restores_bit_exact():
    a, g, theta0, theta = _toy(n=4, seed=2)
    max_kl, c = 1e-12, 1e15  # full step: KL = δ + 4cδ² = 5δ > δ

    seen = []

    def kl_fn(z):  # the "distribution inputs" of these toys are the parameters themselves
        d = z - theta0
        q = d @ a @ d
        return 0.5 * q + c * q**2

    def surrogate_fn(z):
        seen.append(z.detach().clone())
        return g @ z

    before = theta.detach().clone()
    stats = trust_region_step(
        [theta],
        lambda: theta,
        surrogate_fn,
        kl_fn,
        max_kl=max_kl,
        line_search_steps=1,
        accept_ratio=0.0,
        **TOY_KW,
    )
    assert not stats.step_accepted
    assert torch.equal(theta.detach(), before)
    assert any(not torch.equal(s, before) for s in seen)  # a trial step really was tried
    full = _closed_form_full_step(a, g, max_kl)
    assert stats.mean_kl == 0.0
    assert stats.surrogate_improvement == 0.0
    assert stats.line_search_steps == 1
    assert stats.expected_improvement == pytest.approx(float(g @ full), rel=1e-8)


def test_trust_region_step_rejects_concave_surrogate_with_accept_ratio_one():
    # surrogate = g·θ − ½κ‖θ−θ0‖²: improvement = f gᵀs − ½κf²‖s‖² < f gᵀs = expected, always
    a, g, theta0, theta = _toy(n=5, seed=3)
    max_kl, kappa, steps = 0.01, 1.0, 10
    trial_thetas = []

    def surrogate_fn(z):
        trial_thetas.append(z.detach().clone())
        d = z - theta0
        return g @ z - 0.5 * kappa * d @ d

    before = [p.detach().clone() for p in [theta]]
    stats = trust_region_step(
        [theta],
        lambda: theta,
        surrogate_fn,
        lambda z: 0.5 * (z - theta0) @ a @ (z - theta0),
        max_kl=max_kl,
        line_search_steps=steps,
        accept_ratio=1.0,
        **TOY_KW,
    )
    assert not stats.step_accepted
    assert torch.equal(theta.detach(), before[0])
    assert stats.line_search_steps == steps
    assert stats.mean_kl == 0.0 and stats.surrogate_improvement == 0.0
    full = _closed_form_full_step(a, g, max_kl)
    assert stats.expected_improvement == pytest.approx(float(g @ full), rel=1e-8)
    # 1 evaluation before the search + one per backtracking step, each at θ0 + b^i·full
    assert len(trial_thetas) == 1 + steps
    for i, t in enumerate(trial_thetas[1:]):
        torch.testing.assert_close(t - theta0, 0.5**i * full, rtol=1e-9, atol=1e-14)


# --------------------------------------------------------------------------------------------
# trust_region_step on a tiny Gaussian policy
# --------------------------------------------------------------------------------------------


def _gauss_problem(seed: int, n: int = 64, zero_adv: bool = False):
    torch.manual_seed(seed)
    pol = GaussianPolicy()
    obs = torch.randn(n, OBS_DIM, dtype=F64)
    with torch.no_grad():
        d0 = pol.dist(obs)
        actions = d0.sample()
        logp_old = d0.log_prob(actions).sum(-1)
        mu_old = d0.mean.clone()
        ls_old = pol.log_std.detach().clone()
    adv = torch.zeros(n, dtype=F64) if zero_adv else torch.randn(n, dtype=F64)

    def dist_inputs_fn():
        return pol.dist_inputs(obs)

    def surrogate_fn(dist_inputs):
        logp = _normal(dist_inputs).log_prob(actions).sum(-1)
        return (torch.exp(logp - logp_old) * adv).mean()

    def kl_fn_on(rows):
        old = Normal(mu_old[rows], ls_old.exp().expand_as(mu_old[rows]))
        return lambda dist_inputs: kl_divergence(old, _normal(dist_inputs)).sum(-1).mean()

    def fisher_subsample(rows):
        """The (linearize_fn, kl_fn) pair of `rows` alone (J v by reverse-over-reverse)."""
        return (lambda: (pol.dist_inputs(obs[rows]), None), kl_fn_on(rows))

    # independent closed-form versions as functions of the flat parameter vector
    def surr_of_theta(theta):
        mu, ls = _gauss_mu_logstd(theta, obs)
        return (torch.exp(_gauss_logp(mu, ls, actions) - logp_old) * adv).mean()

    def kl_of_theta(theta, rows=slice(None)):
        mu, ls = _gauss_mu_logstd(theta, obs[rows])
        return _gauss_kl(mu_old[rows], ls_old, mu, ls).mean()

    fns = (dist_inputs_fn, surrogate_fn, kl_fn_on(slice(None)))
    return pol, fns, surr_of_theta, kl_of_theta, fisher_subsample


@pytest.mark.parametrize(
    ("seed", "max_kl", "damping", "accept_ratio", "fisher_rows"),
    [
        (0, 0.01, 0.1, 0.5, None),
        (1, 0.01, 0.0, 0.1, None),
        (2, 0.3, 0.1, 0.5, None),
        (3, 2.0, 0.1, 0.5, None),
        # the Fisher estimated on a quarter of the rows: the step uses that metric, the line
        # search the whole batch's KL
        (0, 0.01, 0.1, 0.5, slice(8, 24)),
        (7, 0.05, 0.0, 0.5, [3, 9, 40, 41, 42, 50, 51, 60]),
    ],
)
def test_trust_region_step_gaussian_policy(seed, max_kl, damping, accept_ratio, fisher_rows):
    pol, fns, surr_of_theta, kl_of_theta, fisher_subsample = _gauss_problem(seed)
    params = pol.param_list()
    theta0 = _flat(params)
    b, steps = 0.5, 15

    stats = trust_region_step(
        params,
        *fns,
        fisher_subsample=None if fisher_rows is None else fisher_subsample(fisher_rows),
        max_kl=max_kl,
        cg_iters=40,
        cg_damping=damping,
        line_search_steps=steps,
        backtrack_coeff=b,
        accept_ratio=accept_ratio,
        residual_tol=1e-26,
    )
    assert isinstance(stats, TrustRegionStats)
    assert stats.step_accepted
    assert 1 <= stats.line_search_steps <= steps
    theta1 = _flat(params)

    # independently recomputed KL and surrogate gain
    kl_new = float(kl_of_theta(theta1))
    gain = float(surr_of_theta(theta1) - surr_of_theta(theta0))
    assert kl_new <= max_kl + 1e-6
    assert stats.mean_kl == pytest.approx(kl_new, rel=1e-9, abs=1e-14)
    assert stats.surrogate_improvement == pytest.approx(gain, rel=1e-9, abs=1e-14)
    assert gain > 0

    # the step itself: f · s·sqrt(2δ / sᵀ(H+λI)s), s = (H+λI)⁻¹ g, f = b^(k−1), with H the
    # KL's Hessian on the Fisher's rows
    th = theta0.clone().requires_grad_(True)
    g = torch.autograd.grad(surr_of_theta(th), th)[0]
    rows = slice(None) if fisher_rows is None else fisher_rows
    h = torch.autograd.functional.hessian(
        lambda theta: kl_of_theta(theta, rows), theta0
    ) + damping * torch.eye(theta0.numel(), dtype=F64)
    s = torch.linalg.solve(h, g)
    full = s * math.sqrt(2 * max_kl / float(s @ h @ s))
    f = b ** (stats.line_search_steps - 1)
    torch.testing.assert_close(theta1 - theta0, f * full, rtol=1e-7, atol=1e-9)
    assert stats.expected_improvement == pytest.approx(float(g @ (f * full)), rel=1e-7)
    assert stats.surrogate_improvement >= accept_ratio * stats.expected_improvement

    # every earlier (larger) trial step must have failed the acceptance rule
    for i in range(stats.line_search_steps - 1):
        trial = theta0 + b**i * full
        kl_i = float(kl_of_theta(trial))
        imp_i = float(surr_of_theta(trial) - surr_of_theta(theta0))
        exp_i = float(g @ (b**i * full))
        assert not (kl_i <= max_kl and imp_i > 0 and imp_i >= accept_ratio * exp_i)


def test_trust_region_step_gaussian_large_kl_needs_backtracking():
    # With a huge trust region the quadratic KL model is far off, so the full step overshoots.
    pol, fns, _, kl_of_theta, _ = _gauss_problem(4)
    params = pol.param_list()
    stats = trust_region_step(
        params,
        *fns,
        max_kl=20.0,
        cg_iters=40,
        cg_damping=0.0,
        line_search_steps=15,
        backtrack_coeff=0.5,
        accept_ratio=0.1,
    )
    assert stats.step_accepted
    assert stats.line_search_steps > 1
    assert float(kl_of_theta(_flat(params))) <= 20.0 + 1e-6


def test_trust_region_step_zero_advantages_leaves_params_bit_identical():
    pol, fns, *_ = _gauss_problem(5, zero_adv=True)
    before = [p.detach().clone() for p in pol.parameters()]
    stats = trust_region_step(
        pol.param_list(),
        *fns,
        **DEFAULT_STEP,
    )
    assert not stats.step_accepted
    assert stats.mean_kl == 0.0 and stats.surrogate_improvement == 0.0
    for p, q in zip(pol.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_trust_region_step_skips_frozen_parameters():
    pol, fns, _, kl_of_theta, _ = _gauss_problem(6)
    pol.log_std.requires_grad_(False)
    log_std_before = pol.log_std.detach().clone()
    w_before = pol.mean.weight.detach().clone()
    stats = trust_region_step(
        pol.param_list(),
        *fns,
        **DEFAULT_STEP,
    )
    assert stats.step_accepted
    assert torch.equal(pol.log_std, log_std_before)
    assert not torch.equal(pol.mean.weight, w_before)
    assert float(kl_of_theta(_flat(pol.param_list()))) <= 0.01 + 1e-6


def test_trust_region_stats_is_frozen():
    s = TrustRegionStats(0.1, 0.2, 0.3, 1, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mean_kl = 0.0  # type: ignore[misc]
