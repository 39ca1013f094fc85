"""Action masks: masked actions are never sampled, and training still improves."""

import numpy as np
import pytest
from ray.tune.registry import register_env
from toy_envs import MaskedChoiceEnv, make_masked_choice

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.metrics import team_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_masked_actions_are_never_taken_and_learning_improves():
    register_env("masked_choice", make_masked_choice)
    config = (
        HATRPOConfig()
        .environment("masked_choice")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=400, hidden_sizes=[16], kl_threshold=0.05)
        .reporting(metrics_num_episodes_for_smoothing=20)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        returns = [team_return(algo.train()) for _ in range(8)]
        fragments = algo.env_runner.sample(num_timesteps=400)
    finally:
        algo.stop()
    for fragment in fragments:
        for agent, obs in fragment.obs.items():
            masks, actions = obs["action_mask"], fragment.actions[agent]
            assert np.all(masks[np.arange(len(actions)), actions] == 1), agent
    # a random allowed action is worth 0.5 on average, the best allowed one about 0.83
    assert returns[0] < 0.6 * 20 and returns[-1] > returns[0] + 2.0, returns
    assert all(r <= MaskedChoiceEnv.VALUES[2] * 20 for r in returns)  # never paid by action 3


def test_mask_without_matching_discrete_actions_is_rejected():
    import gymnasium as gym

    from rllib_hatrpo.envs import ParallelStateEnv

    class WrongMask(MaskedChoiceEnv):
        def action_space(self, agent):
            return gym.spaces.Discrete(3)

    with pytest.raises(ValueError, match="agent 'a0': action_mask of size 4 needs a Discrete"):
        ParallelStateEnv(WrongMask())
