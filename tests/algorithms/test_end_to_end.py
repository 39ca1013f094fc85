"""Whole training iterations through RLlib: metrics on MaMuJoCo, learning on a small task."""

import math

import pytest
from ray.tune.registry import register_env
from toy_envs import make_sum_target

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.metrics import team_return

AGENT_METRICS = {
    "mean_kl",
    "surrogate_improvement",
    "expected_improvement",
    "line_search_steps",
    "step_accepted",
}


@pytest.mark.slow
def test_halfcheetah_iterations_report_every_metric(ray_session):
    config = (
        HATRPOConfig()
        .environment("mamujoco", env_config={"scenario": "HalfCheetah", "agent_conf": "2x3"})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=800)
        .debugging(seed=3)
    )
    algo = config.build_algo()
    try:
        # the critic lives on the learner only; EnvRunners hold just the actors
        runner_modules = algo.env_runner_group.foreach_env_runner(
            lambda r: sorted(r.module.keys()), local_env_runner=False
        )
        assert runner_modules == [["agent_0", "agent_1"]]
        assert "shared_critic" in algo.learner_group._learner.module
        orders = []
        for i in range(3):
            result = algo.train()
            learners = result["learners"]
            for agent in ("agent_0", "agent_1"):
                assert AGENT_METRICS <= set(learners[agent])
                assert 0.0 <= learners[agent]["mean_kl"] <= config.kl_threshold + 1e-6
                if learners[agent]["step_accepted"]:
                    assert learners[agent]["surrogate_improvement"] > 0
            assert {"critic_loss", "explained_variance"} <= set(learners["shared_critic"])
            assert sorted(result["agent_order"]) == ["agent_0", "agent_1"]
            assert math.isnan(result["team_return"])  # no 1,000-step episode ended yet
            assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 800 * (i + 1)
            orders.append(result["agent_order"])
        # EnvRunners act with the learner's weights after every sync
        learner_w = algo.learner_group.get_weights(module_ids=["agent_0"])["agent_0"]
        runner_w = algo.env_runner_group.foreach_env_runner(
            lambda r: r.module["agent_0"].get_state(), local_env_runner=False
        )[0]
        for name, value in learner_w.items():
            assert (runner_w[name] == value).all(), name
        # the driver's EnvRunner has no env beside a remote one: evaluate() says what to set
        with pytest.raises(ValueError, match=r"evaluation\(evaluation_num_env_runners=1"):
            algo.evaluate()
    finally:
        algo.stop()


@pytest.mark.learning
def test_small_cooperative_task_improves_clearly(ray_session):
    register_env("sum_target", make_sum_target)
    config = (
        HATRPOConfig()
        .environment("sum_target")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=1000, kl_threshold=0.05, hidden_sizes=[32, 32])
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        returns = [team_return(algo.train()) for _ in range(10)]
    finally:
        algo.stop()
    untrained, trained = returns[0], returns[-1]
    # untrained ≈ −0.77 per step × 50 steps; the optimum approaches 0
    assert untrained < -30
    assert trained > 0.5 * untrained, returns
