"""The learner's update, checked against computations written independently here."""

import copy
import math

import pytest
import torch
from ray.rllib.core.columns import Columns
from torch.func import functional_call

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.algorithms.hatrpo_learner import HATRPOLearner

DELTA = 0.01


def build(env_config, **training):
    cfg = (
        HATRPOConfig()
        .environment("mamujoco", env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=400, hidden_sizes=[4], **training)
        .debugging(seed=1)
    )
    return cfg.build_algo()


def record_agent_steps(learner, monkeypatch):
    """Wraps `agent_step` to record each call's inputs and the parameters before it."""
    calls = []
    original = HATRPOLearner.agent_step

    def wrapped(self, module_id, batch, factor, advantages):
        module = self.module[module_id]
        calls.append(
            {
                "module_id": module_id,
                "batch": batch,
                "factor": factor.clone(),
                "advantages": advantages.clone(),
                "before": {n: p.detach().clone() for n, p in module.named_parameters()},
                "rng_state": torch.get_rng_state(),
                "others_before": {
                    mid: {n: p.detach().clone() for n, p in self.module[mid].named_parameters()}
                    for mid in self.module.keys()
                },
            }
        )
        return original(self, module_id, batch, factor, advantages)

    monkeypatch.setattr(HATRPOLearner, "agent_step", wrapped)
    return calls


def independent_trpo_step(module, params, obs, actions, adv, cfg, fisher_rows=slice(None)):
    """Plain TRPO (Schulman et al. 2015): exact H⁻¹g by a dense solve, then line search;
    H is the KL's Hessian on `fisher_rows`, the line search's KL is on all rows."""
    names = list(params)
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    theta0 = torch.cat([params[n].reshape(-1) for n in names]).double()

    def unflatten(theta):
        return {
            n: t.reshape(s).float()
            for n, t, s in zip(names, theta.split(sizes), shapes, strict=True)
        }

    dist_cls = module.get_train_action_dist_cls()

    def dist_inputs(theta):
        return functional_call(module, unflatten(theta), ({Columns.OBS: obs},))[
            Columns.ACTION_DIST_INPUTS
        ]

    with torch.no_grad():
        old_inputs = dist_inputs(theta0).double()
        old_logp = dist_cls.from_logits(old_inputs.float()).logp(actions)

    def surrogate(theta):
        logp = dist_cls.from_logits(dist_inputs(theta)).logp(actions)
        return (torch.exp(logp - old_logp) * adv).mean()

    def kl(theta, rows=slice(None)):
        new = dist_cls.from_logits(dist_inputs(theta)[rows].double())
        return dist_cls.from_logits(old_inputs[rows]).kl(new).mean()

    g = torch.autograd.functional.jacobian(surrogate, theta0).double()
    hessian = torch.autograd.functional.hessian(lambda t: kl(t, fisher_rows), theta0).double()
    hessian = hessian + cfg.cg_damping * torch.eye(len(theta0), dtype=torch.float64)
    x = torch.linalg.solve(hessian, g)
    full = x * torch.sqrt(2 * cfg.kl_threshold / (x @ hessian @ x))
    base = float(surrogate(theta0))
    for i in range(cfg.line_search_steps):
        frac = cfg.backtrack_coeff**i
        theta = theta0 + frac * full
        improve = float(surrogate(theta)) - base
        if (
            float(kl(theta)) <= cfg.kl_threshold
            and improve > 0
            and improve >= cfg.accept_ratio * float(g @ full) * frac
        ):
            return unflatten(theta), i + 1
    return unflatten(theta0), cfg.line_search_steps


# the full Fisher's dense Hessian takes 8-24 s on the 2 cores: left out of the fast tier
@pytest.mark.parametrize("fisher_fraction", [pytest.param(1.0, marks=pytest.mark.slow), 0.25])
def test_one_agent_update_equals_plain_trpo(monkeypatch, fisher_fraction):
    # agent_conf=None is the single-agent HalfCheetah: one agent, full observation.
    algo = build(
        {"scenario": "HalfCheetah", "agent_conf": None, "agent_obsk": None},
        cg_iters=400,
        fisher_fraction=fisher_fraction,
    )
    try:
        learner = algo.learner_group._learner
        calls = record_agent_steps(learner, monkeypatch)
        episodes = algo.env_runner.sample(num_timesteps=400)
        learner.update(episodes=episodes, agent_order=["agent_0"])
        (call,) = calls
        module = learner.module["agent_0"]
        # with one agent M ≡ 1, so the step sees the standardized advantages themselves
        assert torch.equal(call["factor"], torch.ones_like(call["factor"]))
        adv = call["factor"] * call["advantages"]
        assert abs(float(adv.mean())) < 1e-4 and abs(float(adv.std()) - 1) < 1e-3
        # the Fisher's rows: the step's own draw from torch's generator as it was at the call
        num_rows = len(call["batch"].actions)
        generator = torch.Generator().manual_seed(0)
        generator.set_state(call["rng_state"])
        fisher_rows = torch.randperm(num_rows, generator=generator)
        fisher_rows = fisher_rows[: math.ceil(fisher_fraction * num_rows)]
        assert len(fisher_rows) == round(fisher_fraction * 400)
        expected, steps = independent_trpo_step(
            copy.deepcopy(module),
            call["before"],
            call["batch"].obs,
            call["batch"].actions,
            adv,
            algo.config,
            fisher_rows,
        )
        after = dict(module.named_parameters())
        assert steps < algo.config.line_search_steps  # a step was accepted
        for name, value in expected.items():
            torch.testing.assert_close(after[name].detach(), value, atol=2e-5, rtol=1e-4)
        assert not torch.equal(after["log_std"].detach(), call["before"]["log_std"])
    finally:
        algo.stop()


def test_m_is_the_product_of_earlier_agents_ratios(monkeypatch):
    algo = build({"scenario": "HalfCheetah", "agent_conf": "6x1"})
    try:
        learner = algo.learner_group._learner
        calls = record_agent_steps(learner, monkeypatch)
        episodes = algo.env_runner.sample(num_timesteps=400)
        order = ["agent_3", "agent_0", "agent_5", "agent_1", "agent_4", "agent_2"]
        learner.update(episodes=episodes, agent_order=order)
        assert [c["module_id"] for c in calls] == order
        advantages = calls[0]["advantages"]
        assert all(torch.equal(c["advantages"], advantages) for c in calls)
        for m, call in enumerate(calls):
            # brute force: Π over earlier agents of π_new/π_old on every row
            factor = torch.ones_like(advantages, dtype=torch.float64)
            for earlier in calls[:m]:
                mid, b = earlier["module_id"], earlier["batch"]
                module = learner.module[mid]
                dist_cls = module.get_train_action_dist_cls()
                with torch.no_grad():
                    new = functional_call(
                        module, dict(module.named_parameters()), ({Columns.OBS: b.obs},)
                    )[Columns.ACTION_DIST_INPUTS]
                    old = functional_call(module, earlier["before"], ({Columns.OBS: b.obs},))[
                        Columns.ACTION_DIST_INPUTS
                    ]
                    factor *= torch.exp(
                        dist_cls.from_logits(new).logp(b.actions).double()
                        - dist_cls.from_logits(old).logp(b.actions).double()
                    )
            torch.testing.assert_close(call["factor"].double(), factor, rtol=1e-4, atol=1e-5)
            # agents later in the order have not moved while this one steps
            for later in order[m:]:
                for name, _ in learner.module[later].named_parameters():
                    assert torch.equal(
                        call["others_before"][later][name], calls[0]["others_before"][later][name]
                    )
        assert torch.equal(calls[0]["factor"], torch.ones_like(advantages))
        assert any(not torch.allclose(c["factor"], calls[0]["factor"]) for c in calls[1:])
    finally:
        algo.stop()
