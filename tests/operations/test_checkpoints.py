"""Checkpoints: exact resume in a new process, crash-safe writes, clear errors on mismatch."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP

from rllib_hatrpo import HAPPO, HATRPO, HAPPOConfig, HATRPOConfig
from rllib_hatrpo.operations.checkpointing import restore_path, save_checkpoint

SIX_AGENTS = {"scenario": "HalfCheetah", "agent_conf": "6x1"}
TWO_AGENTS = {"scenario": "HalfCheetah", "agent_conf": "2x3"}
STEPS = ("env_runners", "num_env_steps_sampled_lifetime")

# Restores a checkpoint with nothing but the files, in a fresh interpreter (connected to the
# tests' Ray cluster through RAY_ADDRESS), and pickles what must have survived plus the next
# two iterations' agent orders and counters.
RESTORE_SCRIPT = """
import pickle, sys
import rllib_hatrpo
from ray.rllib.algorithms.algorithm import Algorithm

STEPS = ("env_runners", "num_env_steps_sampled_lifetime")
algo = Algorithm.from_checkpoint(sys.argv[1])
learner = algo.get_state(components="learner_group")["learner_group"]["learner"]
snapshot = {
    "class": type(algo).__name__,
    "rl_module": learner["rl_module"],
    "optimizer": learner["optimizer"],
    "counters": (algo.iteration, algo.metrics.peek(STEPS)),
    "next": [
        (r["agent_order"], r["training_iteration"], r[STEPS[0]][STEPS[1]])
        for r in (algo.train(), algo.train())
    ],
}
algo.stop()
with open(sys.argv[2], "wb") as f:
    pickle.dump(snapshot, f)
"""


def small_config(config_cls: type, env_config: dict[str, Any]) -> Any:
    return (
        config_cls()
        .environment("mamujoco", env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=200, hidden_sizes=[8])
        .debugging(seed=5)
    )


@pytest.fixture(scope="module")
def happo(ray_session, tmp_path_factory):
    """HAPPO with six agents (720 possible orders) after two iterations, and its checkpoint.
    HAPPO has the most optimizer state: the critic's Adam and one Adam per agent."""
    algo = small_config(HAPPOConfig, SIX_AGENTS).build_algo()
    for _ in range(2):
        algo.train()
    path = save_checkpoint(algo, tmp_path_factory.mktemp("happo") / "checkpoint")
    yield algo, path
    algo.stop()


def learner_state(algo: Algorithm) -> dict[str, Any]:
    state = algo.get_state(components=COMPONENT_LEARNER_GROUP)
    return state[COMPONENT_LEARNER_GROUP][COMPONENT_LEARNER]


def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    """Equal structure, dtypes and bits (arrays), or equal values (anything else)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_restore_in_a_new_process_continues_exactly(happo, tmp_path):
    import ray

    algo, path = happo
    saved = learner_state(algo)
    dump = tmp_path / "restored.pkl"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    proc = subprocess.run(
        [sys.executable, "-c", RESTORE_SCRIPT, str(path), str(dump)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored = pickle.loads(dump.read_bytes())

    assert restored["class"] == "HAPPO"
    # actor and critic weights, the value normalizer's float64 statistics, every Adam
    critic = restored["rl_module"]["shared_critic"]
    assert {"running_mean", "running_mean_sq", "debiasing_term"} <= {
        k.removeprefix("value_normalizer.") for k in critic
    }
    assert critic["value_normalizer.debiasing_term"] > 0  # two updates happened
    assert sorted(restored["rl_module"]) == sorted(saved["rl_module"])
    assert_identical(restored["rl_module"], saved["rl_module"], "rl_module")
    assert sorted(restored["optimizer"]) == [f"agent_{i}_actor" for i in range(6)] + [
        "shared_critic_critic"
    ]
    assert_identical(restored["optimizer"], saved["optimizer"], "optimizer")
    assert restored["counters"] == (2, 400)
    # the uninterrupted run draws the same agent orders and counts the same steps
    uninterrupted = [
        (r["agent_order"], r["training_iteration"], r[STEPS[0]][STEPS[1]])
        for r in (algo.train(), algo.train())
    ]
    assert restored["next"] == uninterrupted
    assert [n[1:] for n in uninterrupted] == [(3, 600), (4, 800)]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_failed_save_keeps_the_previous_checkpoint(happo, tmp_path, monkeypatch):
    algo, _ = happo
    path = save_checkpoint(algo, tmp_path / "checkpoint")
    before, iteration = tree_bytes(path), algo.iteration

    def crash_midway(target: str, **kwargs: Any) -> str:
        Path(target).mkdir(parents=True)
        (Path(target) / "rllib_checkpoint.json").write_text("{}")
        (Path(target) / "algorithm_state.pkl").write_bytes(b"\x80\x04half")
        raise OSError("disk full")

    monkeypatch.setattr(algo, "save_to_path", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(algo, path)
    monkeypatch.undo()

    assert restore_path(path) == path and tree_bytes(path) == before
    assert not path.with_name("checkpoint.tmp").exists()
    restored = Algorithm.from_checkpoint(str(path))
    try:
        assert restored.iteration == iteration
    finally:
        restored.stop()


@pytest.mark.slow
def test_a_crash_between_the_renames_leaves_the_old_checkpoint_to_restore(
    happo, tmp_path, monkeypatch
):
    algo, _ = happo
    path = save_checkpoint(algo, tmp_path / "checkpoint")
    before = tree_bytes(path)
    real_replace = os.replace

    def crash_on_new_checkpoint(src: Any, dst: Any) -> None:
        if str(src).endswith(".tmp"):  # the old one is already moved aside
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_new_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(algo, path)
    monkeypatch.undo()

    assert not path.exists()
    survivor = restore_path(path)
    assert survivor == path.with_name("checkpoint.old") and tree_bytes(survivor) == before
    restored = Algorithm.from_checkpoint(str(survivor))
    restored.stop()
    # the next save repairs the folder: one checkpoint, no leftovers
    save_checkpoint(algo, path)
    assert restore_path(path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


@pytest.mark.slow
def test_a_checkpoint_of_another_algorithm_is_refused(happo):
    _, path = happo
    with pytest.raises(ValueError, match=r"holds a HAPPO algorithm; HATRPO.from_checkpoint"):
        HATRPO.from_checkpoint(str(path))


def test_a_checkpoint_not_written_by_this_package_is_refused(tmp_path):
    (tmp_path / "rllib_checkpoint.json").write_text('{"checkpoint_version": "2.1"}')
    with pytest.raises(ValueError, match="not written by an rllib_hatrpo algorithm"):
        HAPPO.from_checkpoint(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("config_cls", [HAPPOConfig, HATRPOConfig])
def test_restoring_into_another_env_or_algorithm_names_the_differences(happo, config_cls):
    _, path = happo
    algo = small_config(config_cls, TWO_AGENTS).build_algo()
    try:
        with pytest.raises(ValueError) as err:
            algo.restore_from_path(str(path))
    finally:
        algo.stop()
    message = str(err.value)
    assert "team.agents: checkpoint has ['agent_0', 'agent_1', 'agent_2'," in message
    assert "team.action_spaces.agent_5: checkpoint has 'Box(-1.0, 1.0, (1,), float32)'" in message
    other_algorithm = "algorithm: checkpoint has 'HAPPO', this algorithm 'HATRPO'"
    assert (other_algorithm in message) == (config_cls is HATRPOConfig)


OLD_CHECKPOINTS = Path(__file__).parents[1] / "data" / "checkpoints_0.1.0"


@pytest.mark.parametrize("name", ["HATRPO", "HAPPO", "HAA2C", "TRPO"])
def test_checkpoint_written_by_version_0_1_0_restores_and_trains(name, ray_session):
    """Checkpoints pickle class paths (configs, modules, learners, the policy mapping); those
    written before a module move (tests/data/make_checkpoints.py) must still restore."""
    from rllib_hatrpo.app.evaluation import evaluate_checkpoint

    path = OLD_CHECKPOINTS / name.lower()
    algo = Algorithm.from_checkpoint(str(path))
    try:
        assert type(algo).__name__ == name and algo.iteration == 1
        result = algo.train()
        assert result["training_iteration"] == 2
        assert result[STEPS[0]][STEPS[1]] == 200
    finally:
        algo.stop()
    assert evaluate_checkpoint(str(path), episodes=1)["episodes"] == 1
