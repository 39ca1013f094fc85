"""validate() rejects bad input with the field and what is allowed, before Ray starts."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.tune.registry import register_env
from toy_envs import make_sum_target

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.algorithms.config import SHARED_POLICY_ID


class NoStateEnv(MultiAgentEnv):
    """A multi-agent env without a global state."""

    def __init__(self, config=None):
        super().__init__()
        self.possible_agents = self.agents = ["a"]
        self.observation_spaces = {"a": gym.spaces.Box(-1, 1, (2,), np.float32)}
        self.action_spaces = {"a": gym.spaces.Box(-1, 1, (1,), np.float32)}


register_env("test_no_state", lambda cfg: NoStateEnv(cfg))
register_env("test_sum_target", make_sum_target)


def cheetah(**training):
    return HATRPOConfig().environment("mamujoco", env_config={}).training(**training)


@pytest.mark.parametrize(
    "training, field, allowed",
    [
        ({"kl_threshold": 0.0}, "kl_threshold", "> 0"),
        ({"kl_threshold": -0.1}, "kl_threshold", "> 0"),
        ({"cg_iters": 0}, "cg_iters", ">= 1"),
        ({"cg_damping": -0.01}, "cg_damping", ">= 0"),
        ({"backtrack_coeff": 0.0}, "backtrack_coeff", r"\(0, 1\)"),
        ({"backtrack_coeff": 1.0}, "backtrack_coeff", r"\(0, 1\)"),
        ({"accept_ratio": -0.1}, "accept_ratio", r"\[0, 1\]"),
        ({"accept_ratio": 1.5}, "accept_ratio", r"\[0, 1\]"),
        ({"line_search_steps": 0}, "line_search_steps", ">= 1"),
        ({"fisher_fraction": 0.0}, "fisher_fraction", r"\(0, 1\]"),
        ({"fisher_fraction": 1.5}, "fisher_fraction", r"\(0, 1\]"),
        ({"critic_epochs": 0}, "critic_epochs", ">= 1"),
        ({"lambda_": 1.5}, "lambda_", r"\[0, 1\]"),
    ],
)
def test_bad_training_fields_are_named(training, field, allowed):
    with pytest.raises(ValueError, match=rf"{field}=.*{allowed}"):
        cheetah(**training).validate()


@pytest.mark.slow
def test_errors_come_before_any_ray_actor():
    # in a fresh process: other tests of this session may already have started Ray
    code = (
        "import ray\n"
        "from rllib_hatrpo import HATRPOConfig\n"
        "config = HATRPOConfig().environment('mamujoco').training(kl_threshold=0.0)\n"
        "try:\n"
        "    config.build_algo()\n"
        "except ValueError as err:\n"
        "    assert 'kl_threshold' in str(err), err\n"
        "    assert not ray.is_initialized(), 'Ray started before the error'\n"
        "    print('rejected before Ray')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "rejected before Ray" in out.stdout, out.stderr[-2000:]


def test_unknown_scenario_lists_valid_ones():
    cfg = HATRPOConfig().environment("mamujoco", env_config={"scenario": "Cheetah"})
    with pytest.raises(ValueError, match=r"scenario.*HalfCheetah.*Walker2d|scenario.*Walker2d"):
        cfg.validate()


def test_unknown_agent_conf_lists_valid_ones():
    cfg = HATRPOConfig().environment(
        "mamujoco", env_config={"scenario": "HalfCheetah", "agent_conf": "3x3"}
    )
    with pytest.raises(ValueError, match=r"agent_conf.*2x3.*6x1"):
        cfg.validate()


def test_env_without_global_state_is_rejected():
    with pytest.raises(ValueError, match="no global state"):
        HATRPOConfig().environment("test_no_state").validate()


def test_sharing_between_different_spaces_is_rejected():
    cfg = (
        HATRPOConfig()
        .environment("test_sum_target", env_config={"agent_spaces_differ": True})
        .training(share_policy=True)
    )
    with pytest.raises(ValueError, match=r"share_policy.*'a0' and 'a1' have different spaces"):
        cfg.validate()


def test_defaults_are_harl_values_and_one_module_per_agent():
    cfg = HATRPOConfig().environment("test_sum_target")
    cfg.validate()
    assert (cfg.kl_threshold, cfg.cg_iters, cfg.cg_damping) == (0.01, 10, 0.1)
    assert (cfg.line_search_steps, cfg.backtrack_coeff, cfg.accept_ratio) == (10, 0.8, 0.5)
    assert cfg.fisher_fraction == 1.0  # HARL's products on the whole batch
    assert (cfg.gamma, cfg.lambda_, cfg.critic_lr, cfg.critic_epochs) == (0.99, 0.95, 5e-4, 5)
    assert (cfg.value_clip, cfg.huber_delta, cfg.use_value_norm, cfg.fixed_order) == (
        0.2,
        10.0,
        True,
        False,
    )
    assert set(cfg.policies) == {"a0", "a1"}
    assert cfg.module_ids() == ["a0", "a1"]
    spec = cfg.get_multi_rl_module_spec()
    assert spec.rl_module_specs["shared_critic"].learner_only
    assert spec.rl_module_specs["shared_critic"].observation_space.shape == (4,)
    assert "shared_critic" not in cfg.get_multi_rl_module_spec(inference_only=True).rl_module_specs


def test_sharing_with_equal_spaces_maps_every_agent_to_one_module():
    cfg = HATRPOConfig().environment("test_sum_target").training(share_policy=True)
    cfg.validate()
    assert cfg.module_ids() == [SHARED_POLICY_ID]


@pytest.mark.parametrize(
    "config_cls, training, field, allowed",
    [
        ("HAPPOConfig", {"clip_param": 0.0}, "clip_param", "> 0"),
        ("HAPPOConfig", {"ppo_epochs": 0}, "ppo_epochs", ">= 1"),
        ("HAA2CConfig", {"a2c_epochs": 0}, "a2c_epochs", ">= 1"),
        ("HAPPOConfig", {"actor_minibatches": 4001}, "actor_minibatches", r"\[1, 4000\]"),
        ("HAPPOConfig", {"actor_minibatches": 0}, "actor_minibatches", r"\[1, 4000\]"),
        ("HATRPOConfig", {"critic_minibatches": 5000}, "critic_minibatches", r"\[1, 4000\]"),
        ("HAPPOConfig", {"entropy_coeff": -0.1}, "entropy_coeff", ">= 0"),
    ],
)
def test_bad_first_order_fields_are_named(config_cls, training, field, allowed):
    import rllib_hatrpo

    cfg = getattr(rllib_hatrpo, config_cls)().environment("test_sum_target").training(**training)
    with pytest.raises(ValueError, match=rf"{field}=.*{allowed}"):
        cfg.validate()
