"""Learning within a CI-sized budget: each algorithm clearly beats its untrained policy.

The returns are the mean over the episodes of each iteration (the smoothing window is set to
one iteration's episodes); "before" averages the first two iterations, "after" the last three.
"""

import time

import numpy as np
import pytest

from rllib_hatrpo import HAPPOConfig, HATRPOConfig, TRPOConfig
from rllib_hatrpo.metrics import team_return

pytestmark = [pytest.mark.learning, pytest.mark.slow]

STEPS_PER_ITERATION = 2000


def learning_curve(config, iterations, episodes_per_iteration):
    config = (
        config.env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .training(train_batch_size_per_learner=STEPS_PER_ITERATION)
        .reporting(metrics_num_episodes_for_smoothing=episodes_per_iteration)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    start = time.time()
    try:
        returns = [team_return(algo.train()) for _ in range(iterations)]
    finally:
        algo.stop()
    before, after = np.mean(returns[:2]), np.mean(returns[-3:])
    print(
        f"{type(algo).__name__} {config.env}: {before:.1f} -> {after:.1f} in "
        f"{iterations * STEPS_PER_ITERATION} env steps, {time.time() - start:.0f} s"
    )
    return before, after


@pytest.mark.usefixtures("ray_session")
def test_trpo_learns_pendulum():
    config = TRPOConfig().environment("Pendulum-v1").training(kl_threshold=0.02, gamma=0.95)
    before, after = learning_curve(config, iterations=40, episodes_per_iteration=10)
    assert before < -900  # the untrained policy
    assert after > before + 300


@pytest.mark.usefixtures("ray_session")
def test_happo_learns_discrete_simple_spread():
    config = (
        HAPPOConfig()
        .environment("simple_spread_v3", env_config={"N": 2})
        .training(hidden_sizes=[64, 64], lr=1e-3, critic_lr=1e-3)
    )
    before, after = learning_curve(config, iterations=20, episodes_per_iteration=80)
    assert after > before + 2.0


@pytest.mark.usefixtures("ray_session")
def test_hatrpo_learns_heterogeneous_speaker_listener():
    config = (
        HATRPOConfig()
        .environment("simple_speaker_listener_v4")
        .training(hidden_sizes=[64, 64], kl_threshold=0.02)
    )
    spaces = config.team_spaces()
    assert spaces.observation_spaces["speaker_0"] != spaces.observation_spaces["listener_0"]
    assert spaces.action_spaces["speaker_0"] != spaces.action_spaces["listener_0"]
    before, after = learning_curve(config, iterations=16, episodes_per_iteration=80)
    assert after > before + 8.0
