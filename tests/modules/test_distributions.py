"""The actors' action distributions and the analytic KL the trust region uses."""

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns

from rllib_hatrpo.modules.actor import ActorRLModule


def actor(action_space, obs_dim=4):
    return ActorRLModule(
        observation_space=gym.spaces.Box(-1, 1, (obs_dim,), np.float32),
        action_space=action_space,
        model_config={"hidden_sizes": [8]},
    )


def dist_inputs(module, obs):
    return module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]


def test_categorical_head_kl_equals_closed_form():
    torch.manual_seed(0)
    module = actor(gym.spaces.Discrete(5))
    obs = torch.randn(32, 4)
    old = dist_inputs(module, obs).detach().double()
    new = old + 0.3 * torch.randn_like(old)
    cls = module.get_train_action_dist_cls()
    kl = cls.from_logits(old).kl(cls.from_logits(new))
    p, q = torch.softmax(old, -1), torch.softmax(new, -1)
    torch.testing.assert_close(kl, (p * (p.log() - q.log())).sum(-1))  # Σ p log p/q


def test_gaussian_head_kl_equals_closed_form_and_std_is_bounded():
    torch.manual_seed(0)
    module = actor(gym.spaces.Box(-1, 1, (3,), np.float32))
    obs = torch.randn(16, 4)
    inputs = dist_inputs(module, obs).detach().double()
    mean, log_std = inputs.chunk(2, -1)
    # HARL's initial std: sigmoid(1) · 0.5
    torch.testing.assert_close(log_std.exp(), torch.full_like(mean, 0.5 / (1 + np.exp(-1.0))))
    with torch.no_grad():
        module.log_std.fill_(50.0)
    assert dist_inputs(module, obs)[:, 3:].exp().max() <= 0.5  # std never exceeds y = 0.5
    new_mean, new_log_std = mean + 0.2, log_std - 0.1
    cls = module.get_train_action_dist_cls()
    kl = cls.from_logits(inputs).kl(cls.from_logits(torch.cat([new_mean, new_log_std], -1)))
    s0, s1 = log_std.exp(), new_log_std.exp()
    # KL(N0‖N1) = Σ log(σ1/σ0) + (σ0² + (μ0 − μ1)²) / (2σ1²) − ½
    expected = (torch.log(s1 / s0) + (s0**2 + (mean - new_mean) ** 2) / (2 * s1**2) - 0.5).sum(-1)
    torch.testing.assert_close(kl, expected)


def test_deterministic_action_is_the_mean_or_the_argmax():
    torch.manual_seed(0)
    obs = torch.randn(6, 4)
    box = actor(gym.spaces.Box(-1, 1, (2,), np.float32))
    inputs = box.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    det = box.get_inference_action_dist_cls().from_logits(inputs).to_deterministic().sample()
    torch.testing.assert_close(det, inputs[:, :2])
    disc = actor(gym.spaces.Discrete(3))
    logits = disc.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    det = disc.get_inference_action_dist_cls().from_logits(logits).to_deterministic().sample()
    assert torch.equal(det, logits.argmax(-1))
