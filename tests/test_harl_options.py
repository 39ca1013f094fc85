"""HARL's settings where ours differ: `critic_lr` as a schedule (HARL's linear decay of the
critic's rate), each checked against a computation written out here."""

from __future__ import annotations

import pytest
from ray.tune.registry import register_env
from toy_envs import make_sum_target

from rllib_hatrpo import HAPPOConfig, HATRPOConfig
from rllib_hatrpo.algorithms.settings import ConfigError
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID

register_env("harl_options_sum_target", make_sum_target)


def config_of(config_cls: type, **training):
    return (
        config_cls()
        .environment("harl_options_sum_target", env_config={"episode_len": 10})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=40, hidden_sizes=[8], **training)
        .debugging(seed=0)
    )


@pytest.mark.parametrize("config_cls", [HATRPOConfig, HAPPOConfig])
def test_critic_lr_schedule_is_the_linear_interpolation_at_the_sampled_env_steps(
    ray_session, config_cls
):
    lr0, horizon = 1e-3, 200
    algo = config_of(config_cls, critic_lr=[[0, lr0], [horizon, 0.0]]).build_algo()
    try:
        optimizer = algo.learner_group._learner.get_optimizer(SHARED_CRITIC_ID, "critic")
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr0, rel=1e-6)
        for _ in range(3):
            steps = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
            # after t env steps: lr(t) = lr0 + (0 − lr0) · t / horizon, linear between points
            expected = lr0 + (0.0 - lr0) * steps / horizon
            assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)
        assert steps == 120  # three iterations of 40 env steps
    finally:
        algo.stop()


@pytest.mark.parametrize(
    "critic_lr",
    [0.0, [[0, 1e-3]], [[10, 1e-3], [100, 0.0]], [[0, 1e-3], [0, 0.0]], [[0, -1e-3], [10, 0]]],
)
def test_critic_lr_must_be_a_positive_rate_or_an_rllib_schedule(critic_lr):
    with pytest.raises(ConfigError, match=r"critic_lr=.*a number > 0, or a schedule"):
        config_of(HATRPOConfig, critic_lr=critic_lr).validate()
