"""The batched MaMuJoCo env is the same environment as `mamujoco_v1` stepped copy by copy.

Both are reset with the same seeds and stepped with the same actions, one step at a time, for
1,050 steps of two copies (every task's 1,000-step time limit, and for the tasks that fall,
many terminations, so resets inside a step are covered). At every step every agent's
observation, the global state, the final state of an ended episode and the terminations and
truncations are compared bit for bit, the rewards to 1e-12 relative (a reordered sum may round
differently; none did when this was written): the two envs are therefore at identical states
at every step, which makes the comparison one of single steps from identical states.
The slowest scenarios run in the `slow` tier.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import stats

from rllib_hatrpo.envs.batched_mamujoco import BatchedMaMuJoCo, make_batched_mamujoco
from rllib_hatrpo.envs.mamujoco import (
    VALID_AGENT_CONFS,
    make_mamujoco_env,
    single_joint_factorization,
)
from rllib_hatrpo.sampling.vector_env import TeamVectorEnv, make_team_vector_env

NUM_COPIES = 2
NUM_STEPS = 1050
SLOW_SCENARIOS = ("Humanoid", "HumanoidStandup", "ManySegmentAnt")
"""Stepped with one copy (the physics alone takes seconds; their episodes end early)."""

FALLBACKS = {
    ("Reacher", None, "local"),
    ("Reacher", "2x1", "local"),
    ("InvertedDoublePendulum", None, "local"),
}
"""Where observations are not gathers (Reacher's fingertip-to-target difference, the sines and
cosines of InvertedDoublePendulum's state): `mamujoco_v1` copies are kept."""

PERMUTED = {("Pusher", "3p", "local")}
"""The library names two of Pusher's joints alike ('r_wrist_roll_joint'), so the order of its
agent 0's entries follows object ids and differs between env instances; the batched env uses
one order for all copies. Compared as sorted rows."""


def _configs() -> list[dict]:
    configs = []
    for scenario, confs in VALID_AGENT_CONFS.items():
        for conf in confs:
            for mode in ("local", "global"):
                extra = {"agent_obsk": None} if conf is None else {}
                configs.append(
                    {"scenario": scenario, "agent_conf": conf, "obs_mode": mode, **extra}
                )
    for scenario, label in (("Walker2d", "6x1"), ("Humanoid", "17x1")):
        for mode in ("local", "global"):
            configs.append(
                {"scenario": scenario, "agent_conf": label, "obs_mode": mode, "single_joint": True}
            )
    for scenario in ("ManySegmentSwimmer", "ManySegmentAnt"):
        configs.append({"scenario": scenario, "agent_conf": "2x2", "obs_mode": "local"})
    # Another model file (the v2-v4 Walker2d) through `xml_file`.
    configs.append(
        {
            "scenario": "Walker2d",
            "agent_conf": "2x3",
            "obs_mode": "global",
            "xml_file": "walker2d.xml",
        }
    )
    return configs


def _env_config(config: dict) -> dict:
    config = dict(config)
    if config.pop("single_joint", False):
        config["agent_factorization"] = single_joint_factorization(config["scenario"])
    return config


def _key(config: dict) -> tuple:
    return config["scenario"], config["agent_conf"], config["obs_mode"]


def _assert_same(reference, batched, permuted: bool) -> None:
    if permuted:
        reference, batched = np.sort(reference, axis=-1), np.sort(batched, axis=-1)
    np.testing.assert_array_equal(batched, reference)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(c, marks=pytest.mark.slow) if c["scenario"] in SLOW_SCENARIOS else c
        for c in _configs()
    ],
    ids=lambda c: "-".join(map(str, _key(c) + ((c["xml_file"],) if "xml_file" in c else ()))),
)
def test_batched_env_equals_mamujoco_v1_step_by_step(config):
    env_config = _env_config(config)
    copies = 1 if config["scenario"] in SLOW_SCENARIOS else NUM_COPIES
    batched = make_batched_mamujoco(env_config, copies)
    if _key(config) in FALLBACKS:
        assert batched is None
        return
    assert isinstance(batched, BatchedMaMuJoCo)
    reference = TeamVectorEnv(lambda: make_mamujoco_env({**env_config, "batched": False}), copies)
    permuted = _key(config) in PERMUTED
    assert batched.agents == reference.agents
    assert batched.observation_spaces == reference.observation_spaces
    assert batched.action_spaces == reference.action_spaces

    (ref_obs, ref_states), (obs, states) = reference.reset(seed=7), batched.reset(seed=7)
    np.testing.assert_array_equal(states, ref_states)
    for agent in reference.agents:
        _assert_same(ref_obs[agent], obs[agent], permuted)
    rng = np.random.default_rng(0)
    episode_ends = 0
    for _ in range(NUM_STEPS):
        actions = {
            a: rng.uniform(space.low, space.high, (copies, *space.shape))
            for a, space in reference.action_spaces.items()
        }
        ref_step, step = reference.step(actions), batched.step(actions)
        for agent in reference.agents:
            _assert_same(ref_step.obs[agent], step.obs[agent], permuted)
            assert step.obs[agent].dtype == ref_step.obs[agent].dtype == np.float32
        np.testing.assert_array_equal(step.states, ref_step.states)
        np.testing.assert_allclose(step.rewards, ref_step.rewards, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(step.terminated, ref_step.terminated)
        np.testing.assert_array_equal(step.truncated, ref_step.truncated)
        assert step.final_states.keys() == ref_step.final_states.keys()
        for i, final in ref_step.final_states.items():
            np.testing.assert_array_equal(step.final_states[i], final)
        episode_ends += len(ref_step.final_states)
    assert episode_ends >= copies  # every copy's episode ended at least once
    batched.close()
    reference.close()


@pytest.mark.parametrize("scenario", ["HalfCheetah", "Ant", "Hopper"])
def test_reset_distribution_is_gymnasiums(scenario):
    """Unseeded resets follow the task's law around the initial pose: qpos uniform on ±scale
    (all three), qvel uniform (Hopper) or normal with std scale (HalfCheetah, Ant); checked by
    Kolmogorov-Smirnov tests on 400 resets, for the batched env and for `mamujoco_v1`."""
    num = 400
    batched = make_batched_mamujoco(
        {"scenario": scenario, "agent_conf": None, "agent_obsk": None}, 1
    )
    task = batched._gyms[0]
    scale = task._reset_noise_scale
    batched.reset(seed=1)
    library = make_mamujoco_env({"scenario": scenario, "agent_conf": None, "agent_obsk": None})
    library.reset(seed=2)
    library_task = library.par_env.single_agent_env.unwrapped
    samples = {"batched": [], "library": []}
    for _ in range(num):
        batched.reset()
        samples["batched"].append(np.r_[task.data.qpos - task.init_qpos, task.data.qvel])
        library.reset()
        samples["library"].append(
            np.r_[library_task.data.qpos - library_task.init_qpos, library_task.data.qvel]
        )
    nq = task.model.nq
    uniform = stats.uniform(loc=-scale, scale=2 * scale).cdf
    velocity_law = uniform if scenario == "Hopper" else stats.norm(scale=scale).cdf
    for name, rows in samples.items():
        rows = np.array(rows)
        for column in range(rows.shape[1]):
            law = uniform if column < nq else velocity_law
            p = stats.kstest(rows[:, column], law).pvalue
            assert p > 1e-4, (name, column, p)
    # and the batched env's positions spread as the library's (two-sample test)
    pooled = [np.array(rows)[:, :nq].ravel() for rows in samples.values()]
    assert stats.ks_2samp(*pooled).pvalue > 1e-4


def test_fallback_is_logged_once(caplog):
    config = {"scenario": "Reacher", "agent_conf": "2x1", "obs_mode": "local", "agent_obsk": 2}
    with caplog.at_level(logging.INFO, logger="rllib_hatrpo.envs.batched_mamujoco"):
        first = make_team_vector_env(lambda: make_mamujoco_env(config), 2)
        second = make_team_vector_env(lambda: make_mamujoco_env(config), 2)
    assert isinstance(first, TeamVectorEnv) and isinstance(second, TeamVectorEnv)
    messages = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
    assert len(messages) == 1 and "Reacher" in messages[0] and "gather" in messages[0]


@pytest.mark.parametrize("batched", [True, False])
def test_runner_vector_env_follows_the_batched_key(batched):
    env = make_team_vector_env(
        lambda: make_mamujoco_env({"scenario": "HalfCheetah", "batched": batched}), 3
    )
    assert isinstance(env, BatchedMaMuJoCo if batched else TeamVectorEnv)
    assert env.num_envs == 3
    env.close()
