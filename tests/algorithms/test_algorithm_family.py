"""One training_step and one learner update serve every algorithm; they differ by the step."""

import pytest

from rllib_hatrpo import HAA2C, HAPPO, HATRPO, TRPO
from rllib_hatrpo.algorithms.algorithm import HAAlgorithm
from rllib_hatrpo.algorithms.first_order_learner import HAA2CLearner, HAPPOLearner
from rllib_hatrpo.algorithms.hatrpo_learner import HATRPOLearner
from rllib_hatrpo.algorithms.learner import HeterogeneousAgentLearner

SHARED_LEARNER_METHODS = {"update", "_module_batches", "_fit_critic", "_logp", "_dist_inputs"}


@pytest.mark.parametrize("algo", [HATRPO, HAPPO, HAA2C, TRPO])
def test_every_algorithm_runs_the_same_training_step(algo):
    assert issubclass(algo, HAAlgorithm)
    assert algo.training_step is HAAlgorithm.training_step


@pytest.mark.parametrize(
    "algo, learner",
    [(HATRPO, HATRPOLearner), (HAPPO, HAPPOLearner), (HAA2C, HAA2CLearner), (TRPO, HATRPOLearner)],
)
def test_learners_differ_only_by_the_agent_step(algo, learner):
    assert algo.get_default_config().get_default_learner_class() is learner
    assert issubclass(learner, HeterogeneousAgentLearner)
    for cls in learner.__mro__:
        if cls is HeterogeneousAgentLearner:
            break
        assert not SHARED_LEARNER_METHODS & set(vars(cls)), cls
    assert learner.update is HeterogeneousAgentLearner.update
