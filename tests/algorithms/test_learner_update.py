"""The learner's update and the first-order agent step on small hand-made batches, checked
against computations written independently here: GAE as the plain sum of discounted TD errors,
M from the first agent's policy before and after its step (a hand-written Gaussian log-density),
and Adam's steps on the entropy bonus in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from learner_steps import AGENTS, random_fragments
from ray.rllib.core.columns import Columns
from ray.tune.registry import register_env
from toy_envs import make_sum_target

from rllib_hatrpo import HAA2CConfig, HAPPOConfig, HATRPOConfig
from rllib_hatrpo.algorithms.learner import ModuleBatch
from rllib_hatrpo.envs import GLOBAL_STATE_KEY
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID
from rllib_hatrpo.sampling.team_fragment import TeamFragment

register_env("learner_sum_target", make_sum_target)

GAMMA, LAMBDA = 0.9, 0.8
# three fragments: one ended by termination (no bootstrap), two cut or truncated (bootstrap)
LENGTHS, TERMINATED = [5, 3, 4], [True, False, False]
# the value normalizer's statistics set before the update: mean 3, variance 4
NORM_MEAN, NORM_VAR = 3.0, 4.0

CONFIGS = {
    "HATRPO": lambda: HATRPOConfig().training(kl_threshold=0.05),
    "HAPPO": lambda: HAPPOConfig().training(lr=1e-2, entropy_coeff=0.1, actor_minibatches=2),
    "HAA2C": lambda: HAA2CConfig().training(lr=1e-2, entropy_coeff=0.1, actor_minibatches=2),
    "HATRPO-shared": lambda: HATRPOConfig().training(kl_threshold=0.05, share_policy=True),
}


def build(name: str, **training):
    config = (
        CONFIGS[name]()
        .environment("learner_sum_target")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(hidden_sizes=[8], gamma=GAMMA, lambda_=LAMBDA, **training)
        .debugging(seed=0)
    )
    return config.build_algo()


@pytest.fixture(scope="module")
def algos(ray_session):
    built = {}
    yield lambda name: built.setdefault(name, build(name))
    for algo in built.values():
        algo.stop()


def hand_made_fragments(seed: int = 0) -> list[TeamFragment]:
    return random_fragments(zip(LENGTHS, TERMINATED, strict=True), seed)


def gae_by_hand(fragments: list[TeamFragment], values: list[np.ndarray]) -> np.ndarray:
    """A_t = Σ_k (γλ)^k δ_{t+k} with δ_t = r_t + γ V(s_t+1) − V(s_t) inside each fragment;
    V after a terminated fragment's last step is 0, after any other its bootstrap value."""
    advantages = []
    for fragment, v in zip(fragments, values, strict=True):
        n = len(fragment)
        for t in range(n):
            a = 0.0
            for k in range(t, n):
                v_next = 0.0 if (fragment.terminated and k == n - 1) else v[k + 1]
                delta = fragment.rewards[k] + GAMMA * v_next - v[k]
                a += (GAMMA * LAMBDA) ** (k - t) * delta
            advantages.append(a)
    return np.array(advantages)


def gaussian_logp(module, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """log N(a; μ, σ²) written out, from the module's outputs (μ, log σ)."""
    with torch.no_grad():
        out = module.forward_train({Columns.OBS: torch.as_tensor(obs)})
    inputs = out[Columns.ACTION_DIST_INPUTS].double().numpy()
    dim = actions.shape[1]
    mu, log_std = inputs[:, :dim], inputs[:, dim:]
    z = (actions - mu) / np.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def record_agent_steps(learner, monkeypatch) -> list[dict]:
    calls = []
    original = learner.agent_step

    def wrapped(module_id, batch, factor, advantages):
        calls.append(
            {"module_id": module_id, "factor": factor.clone(), "advantages": advantages.clone()}
        )
        return original(module_id, batch, factor, advantages)

    monkeypatch.setattr(learner, "agent_step", wrapped)
    return calls


def set_critic_statistics(learner) -> None:
    """A value normalizer that is not the identity, so GAE must see de-normalized values."""
    stats = learner.module[SHARED_CRITIC_ID].value_normalizer
    with torch.no_grad():
        stats.debiasing_term.fill_(1.0)
        stats.running_mean.fill_(NORM_MEAN)
        stats.running_mean_sq.fill_(NORM_VAR + NORM_MEAN**2)


@pytest.mark.parametrize("name", ["HATRPO", "HAPPO", "HATRPO-shared"])
def test_every_agent_step_gets_the_standardized_gae_of_the_batch(algos, monkeypatch, name):
    learner = algos(name).learner_group._learner
    set_critic_statistics(learner)
    fragments = hand_made_fragments()
    critic = learner.module[SHARED_CRITIC_ID]
    with torch.no_grad():  # V(s) in the env's units: the critic's output de-normalized by hand
        values = [
            critic.compute_values({GLOBAL_STATE_KEY: torch.as_tensor(f.states)}).double().numpy()
            * math.sqrt(NORM_VAR)
            + NORM_MEAN
            for f in fragments
        ]
    raw = gae_by_hand(fragments, values)
    expected = (raw - raw.mean()) / (raw.std(ddof=1) + 1e-5)

    calls = record_agent_steps(learner, monkeypatch)
    learner.update(episodes=fragments, agent_order=None)
    expected_modules = ["shared_policy"] if name.endswith("shared") else list(AGENTS)
    assert sorted(c["module_id"] for c in calls) == expected_modules
    for call in calls:
        # a module's rows are its agents' rows stacked, each agent on the same env steps
        repeats = len(AGENTS) if name.endswith("shared") else 1
        np.testing.assert_allclose(
            call["advantages"].double().numpy(),
            np.tile(expected, repeats),
            rtol=1e-5,
            atol=1e-5,
            err_msg=call["module_id"],
        )
    # not vacuous: the bootstrap and the normalizer's shift move the advantages away from the
    # rewards' own standardized values
    rewards = np.concatenate([f.rewards for f in fragments])
    assert np.abs(expected - (rewards - rewards.mean()) / rewards.std(ddof=1)).max() > 0.1


@pytest.mark.parametrize("name", ["HATRPO", "HAPPO"])
def test_second_agents_factor_is_the_first_agents_ratio(algos, monkeypatch, name):
    learner = algos(name).learner_group._learner
    fragments = hand_made_fragments(seed=1)
    first, second = "a1", "a0"
    obs = np.concatenate([f.obs[first] for f in fragments])
    actions = np.concatenate([f.actions[first] for f in fragments])
    logp_old = gaussian_logp(learner.module[first], obs, actions)

    calls = record_agent_steps(learner, monkeypatch)
    learner.update(episodes=fragments, agent_order=[first, second])
    assert [c["module_id"] for c in calls] == [first, second]
    # the first agent has not moved since its step: its ratio π_new/π_old on every env step
    ratio = np.exp(gaussian_logp(learner.module[first], obs, actions) - logp_old)
    assert np.abs(ratio - 1).max() > 1e-2  # it did move
    np.testing.assert_array_equal(calls[0]["factor"].numpy(), np.ones(sum(LENGTHS)))
    np.testing.assert_allclose(calls[1]["factor"].double().numpy(), ratio, rtol=1e-4, atol=0)


def module_batch(module, obs: np.ndarray, actions: np.ndarray) -> ModuleBatch:
    obs_t, actions_t = torch.as_tensor(obs), torch.as_tensor(actions)
    with torch.no_grad():
        inputs = module.forward_train({Columns.OBS: obs_t})[Columns.ACTION_DIST_INPUTS]
        logp = module.get_train_action_dist_cls().from_logits(inputs).logp(actions_t)
    return ModuleBatch(obs_t, actions_t, logp, inputs, num_agents=1, share=1.0)


def params_of(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def step_from(learner, params, batch, factor, advantages, seed=0) -> dict[str, torch.Tensor]:
    """The agent step of module a0 from the given parameters and a fresh Adam, on the same
    minibatches (the same seed for their draw)."""
    learner.module["a0"].load_state_dict(params)
    learner.get_optimizer("a0", "actor").state.clear()
    torch.manual_seed(seed)
    learner.agent_step("a0", batch, factor.float(), advantages.float())
    return params_of(learner.module["a0"])


@pytest.mark.parametrize("name", ["HAPPO", "HAA2C"])
def test_rows_with_m_zero_give_no_gradient(algos, name):
    learner = algos(name).learner_group._learner
    module = learner.module["a0"]
    start = {k: v.clone() for k, v in module.state_dict().items()}
    rng = np.random.default_rng(2)
    n = 16
    obs = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    actions = rng.normal(0, 0.5, (n, 1)).astype(np.float32)
    batch = module_batch(module, obs, actions)
    factor = torch.as_tensor(rng.uniform(0.5, 1.5, n))
    factor[::2] = 0.0  # every other row: an earlier agent made this action impossible
    advantages = torch.as_tensor(rng.normal(0, 1, n))
    zeroed = advantages.clone()
    zeroed[::2] = 0.0
    try:
        stepped = step_from(learner, start, batch, factor, advantages)
        # the M = 0 rows' advantages do not matter at all: the same step without them
        without = step_from(learner, start, batch, factor, zeroed)
        for key, value in stepped.items():
            torch.testing.assert_close(value, without[key], rtol=0, atol=0, msg=key)
        # not vacuous: with M = 1 on those rows their advantages change the step
        ones = factor.clone()
        ones[::2] = 1.0
        moved = step_from(learner, start, batch, ones, advantages)
        assert any((moved[k] - stepped[k]).abs().max() > 1e-4 for k in stepped)
    finally:
        module.load_state_dict(start)


def gaussian_entropy(module) -> float:
    """Σ_d log σ_d + ½ log(2πe) of the state-independent std σ = sigmoid(log_std/x)·y."""
    std = torch.sigmoid(module.log_std.detach().double() / module.std_x_coef) * module.std_y_coef
    return float((torch.log(std) + 0.5 * math.log(2 * math.pi * math.e)).sum())


@pytest.mark.parametrize("name", ["HAPPO", "HAA2C"])
def test_entropy_bonus_raises_entropy(algos, name):
    learner = algos(name).learner_group._learner
    cfg = learner.config
    module = learner.module["a0"]
    optimizer = learner.get_optimizer("a0", "actor")
    start = {k: v.clone() for k, v in module.state_dict().items()}
    rng = np.random.default_rng(3)
    n = 16
    batch = module_batch(
        module,
        rng.uniform(0, 1, (n, 2)).astype(np.float32),
        rng.normal(0, 0.5, (n, 1)).astype(np.float32),
    )
    before_entropy = gaussian_entropy(module)
    try:
        # A = 0: the policy loss has no gradient, only the entropy bonus moves the policy
        after = step_from(learner, start, batch, torch.ones(n), torch.zeros(n))
        after_entropy = gaussian_entropy(module)
        assert after_entropy > before_entropy
        # the only gradient is the bonus's on log_std: Adam's steps on it written out, and
        # no other parameter moves (zero gradient, zero Adam step)
        x = module.std_x_coef
        theta = start["log_std"].double().clone()
        m = v = torch.zeros_like(theta)
        (beta1, beta2), eps = optimizer.defaults["betas"], optimizer.defaults["eps"]
        for k in range(1, cfg.actor_epochs * cfg.actor_minibatches + 1):
            # −c · ∂/∂θ log(sigmoid(θ/x)·y) = −c · (1 − sigmoid(θ/x)) / x
            g = -cfg.entropy_coeff * (1 - torch.sigmoid(theta / x)) / x
            m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g**2
            m_hat, v_hat = m / (1 - beta1**k), v / (1 - beta2**k)
            theta = theta - cfg.lr * m_hat / (v_hat.sqrt() + eps)
        torch.testing.assert_close(after["log_std"].double(), theta, rtol=1e-6, atol=1e-7)
        for key, value in after.items():
            if key != "log_std":
                torch.testing.assert_close(value, start[key], rtol=0, atol=0, msg=key)
    finally:
        module.load_state_dict(start)
