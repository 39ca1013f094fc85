"""`tune.Tuner("<ALGORITHM>", ...)` from Python, as the README shows it: every algorithm's
results carry `team_return`, and Tune ranks its trials on it."""

import math

import pytest
from ray import tune

from rllib_hatrpo.metrics import TEAM_RETURN
from rllib_hatrpo.registry import algorithm_class

pytestmark = pytest.mark.slow  # Tune trials: half a minute to a minute each

ENVS = {
    "HATRPO": "simple_spread_v3",  # 25-step episodes: every iteration ends some
    "HAPPO": "simple_spread_v3",
    "HAA2C": "simple_speaker_listener_v4",
    "TRPO": "Pendulum-v1",  # 200-step episodes: one per iteration
}


@pytest.mark.parametrize("algorithm", ENVS)
def test_tuner_ranks_trials_on_team_return(algorithm, ray_session, tmp_path):
    config = (
        algorithm_class(algorithm)
        .get_default_config()
        .environment(ENVS[algorithm])
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(
            train_batch_size_per_learner=200,
            hidden_sizes=[16, 16],
            critic_lr=tune.grid_search([1e-4, 1e-2]),
        )
        .debugging(seed=0)
    )
    results = tune.Tuner(
        algorithm,
        param_space=config,
        tune_config=tune.TuneConfig(metric=TEAM_RETURN, mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), stop={"training_iteration": 2}),
    ).fit()
    assert not results.errors
    returns = [result.metrics[TEAM_RETURN] for result in results]
    assert len(returns) == 2 and all(math.isfinite(r) for r in returns), returns
    best = results.get_best_result()
    assert best.metrics[TEAM_RETURN] == max(returns)
    assert best.config["critic_lr"] in (1e-4, 1e-2)
