"""The algorithm names resolve in Tune's and RLlib's registries, also in a fresh process, and
Tune runs trials of an algorithm given by name."""

import subprocess
import sys

import pytest
from ray.rllib.algorithms import registry as rllib_registry
from ray.tune.registry import get_trainable_cls

import rllib_hatrpo
from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.registry import ALGORITHMS

NAMES = ["HATRPO", "HAPPO", "HAA2C", "TRPO"]


def test_names_resolve_in_tune_and_rllib_registries():
    from ray.rllib import _register_all

    _register_all()  # what Tune runs for names it does not know; ours must survive it
    for name in NAMES:
        cls = getattr(rllib_hatrpo, name)
        assert ALGORITHMS[name] is cls
        assert get_trainable_cls(name) is cls
        assert rllib_registry._get_algorithm_class(name) is cls
        algo_cls, default_config = rllib_registry.ALGORITHMS[name]()
        assert algo_cls is cls and isinstance(default_config, type(cls.get_default_config()))
        assert rllib_registry.ALGORITHMS_CLASS_TO_NAME[name] == name


@pytest.mark.slow
def test_names_resolve_in_a_fresh_process_after_import():
    code = (
        "import rllib_hatrpo, ray.tune.registry as r\n"
        "from ray.rllib.algorithms.registry import _get_algorithm_class\n"
        f"for name in {NAMES!r}:\n"
        "    tune_cls, rllib_cls = r.get_trainable_cls(name), _get_algorithm_class(name)\n"
        "    print(name, tune_cls.__module__, rllib_cls.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert "HATRPO rllib_hatrpo.algorithms.hatrpo HATRPO" in out
    assert "HAPPO rllib_hatrpo.algorithms.happo HAPPO" in out
    assert "HAA2C rllib_hatrpo.algorithms.happo HAA2C" in out
    assert "TRPO rllib_hatrpo.algorithms.trpo TRPO" in out


@pytest.mark.slow
def test_tune_runs_two_trials_of_hatrpo_by_name(ray_session, tmp_path):
    from ray import tune

    config = (
        HATRPOConfig()
        .environment("mamujoco", env_config={"scenario": "HalfCheetah", "agent_conf": "2x3"})
        # no EnvRunner actors: each trial needs 1 CPU, so both fit on 2 CPUs at once
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(
            train_batch_size_per_learner=200,
            hidden_sizes=[16, 16],
            kl_threshold=tune.grid_search([0.01, 0.02]),
        )
    )
    results = tune.Tuner(
        "HATRPO",
        param_space=config,
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), stop={"training_iteration": 1}, verbose=0
        ),
    ).fit()
    assert not results.errors
    assert len(results) == 2
    assert sorted(r.config["kl_threshold"] for r in results) == [0.01, 0.02]
    for result in results:
        assert result.metrics["training_iteration"] == 1
        assert sorted(result.metrics["agent_order"]) == ["agent_0", "agent_1"]
