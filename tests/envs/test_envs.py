"""Tests of the environment layer: ParallelStateEnv and the MaMuJoCo factory/validator."""

from __future__ import annotations

import inspect
import re
from typing import Any
from xml.etree import ElementTree

import gymnasium as gym
import numpy as np
import pytest
from gymnasium_robotics.envs.multiagent_mujoco import mujoco_multi, obsk
from pettingzoo.utils.env import ParallelEnv

from rllib_hatrpo.envs import (
    GLOBAL_STATE_KEY,
    ParallelStateEnv,
    make_mamujoco_env,
    single_joint_factorization,
    validate_mamujoco_config,
)
from rllib_hatrpo.envs.mamujoco import SCENARIOS, SEGMENT_SCENARIOS, VALID_AGENT_CONFS


def _random_actions(env: ParallelStateEnv) -> dict[str, Any]:
    return {aid: env.action_spaces[aid].sample() for aid in env.agents}


class _FakeEnv(ParallelEnv):
    """Two agents with float64 Box obs; "b" terminates after step 1, "a" after step 2."""

    metadata = {"name": "fake_v0"}

    def __init__(self) -> None:
        self.possible_agents = ["a", "b"]
        self.agents: list[str] = []
        self.t = 0

    def observation_space(self, agent: str) -> gym.Space:
        return gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64)

    def action_space(self, agent: str) -> gym.Space:
        return gym.spaces.Discrete(2)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.zeros(2) for a in self.agents}, {a: {"x": 1} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        self.t += 1
        live = list(self.agents)
        terms = {a: a == "b" or self.t >= 2 for a in live}
        self.agents = [a for a in live if not terms[a]]
        obs = {a: np.full(2, self.t, dtype=np.float64) for a in live}
        rews = {a: np.float64(self.t) for a in live}
        return obs, rews, terms, dict.fromkeys(live, False), {a: {} for a in live}

    def render(self) -> str:
        return "frame"


class _FakeStateEnv(_FakeEnv):
    def state(self) -> np.ndarray:
        return np.array([self.t, 2.0 * self.t, 3.0], dtype=np.float64)


def test_env_without_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="fake_v0.*global state"):
        ParallelStateEnv(_FakeEnv())


def test_generic_wrapper_semantics() -> None:
    env = ParallelStateEnv(_FakeStateEnv())
    assert env.observation_spaces["a"].dtype == np.float32
    assert env.action_spaces["a"] == gym.spaces.Discrete(2)
    assert env.state_space.shape == (3,) and env.state_space.dtype == np.float32
    obs, infos = env.reset(seed=0)
    assert obs["a"].dtype == np.float32 and infos["a"]["x"] == 1
    np.testing.assert_array_equal(infos["b"][GLOBAL_STATE_KEY], [0, 0, 3])
    obs, rews, terms, truncs, infos = env.step({"a": 0, "b": 1})
    assert terms == {"a": False, "b": True, "__all__": False}
    assert truncs["__all__"] is False and type(rews["a"]) is float
    # RLlib requires every agent that returned an observation to be listed in `agents`.
    assert env.agents == ["a", "b"]
    obs, rews, terms, truncs, infos = env.step({"a": 0})
    assert set(obs) == {"a"} and terms["__all__"] is True and truncs["__all__"] is False
    np.testing.assert_array_equal(infos["a"][GLOBAL_STATE_KEY], [2, 4, 3])
    assert env.render() == "frame"
    env.close()


def test_halfcheetah_local_mode_and_truncation() -> None:
    env = make_mamujoco_env({"scenario": "HalfCheetah", "agent_conf": "2x3"})
    assert env.possible_agents == ["agent_0", "agent_1"]
    for aid in env.possible_agents:
        assert env.observation_spaces[aid] == gym.spaces.Box(-np.inf, np.inf, (12,), np.float32)
        assert env.action_spaces[aid].shape == (3,) and env.action_spaces[aid].dtype == np.float32
    assert env.state_space.shape == (17,) and env.state_space.dtype == np.float32
    env.action_spaces["agent_0"].seed(0)
    env.action_spaces["agent_1"].seed(1)

    obs, infos = env.reset(seed=0)
    for step in range(1, 1001):
        for aid in env.possible_agents:
            assert obs[aid].dtype == np.float32 and obs[aid].shape == (12,)
            state = infos[aid][GLOBAL_STATE_KEY]
            assert state.dtype == np.float32 and state.shape == env.state_space.shape
            np.testing.assert_array_equal(state, env.par_env.state().astype(np.float32))
        obs, rews, terms, truncs, infos = env.step(_random_actions(env))
        assert all(type(r) is float for r in rews.values())
        if step < 1000:
            assert not terms["__all__"] and not truncs["__all__"]
    assert truncs == {"agent_0": True, "agent_1": True, "__all__": True}
    assert terms == {"agent_0": False, "agent_1": False, "__all__": False}
    assert env.agents == ["agent_0", "agent_1"]  # the agents whose final obs was returned
    env.close()


@pytest.mark.parametrize(
    ("scenario", "agent_conf", "state_dim"), [("HalfCheetah", "2x3", 17), ("Ant", "4x2", 105)]
)
def test_global_obs_mode_is_harls_formula_on_real_states(
    scenario: str, agent_conf: str, state_dim: int
) -> None:
    """HARL's MujocoMulti: obs_i = standardize(concat(state, one_hot(i))) and share_obs =
    standardize(state), standardize(x) = (x − mean(x)) / std(x) over the vector's entries."""
    env = make_mamujoco_env({"scenario": scenario, "agent_conf": agent_conf, "obs_mode": "global"})
    n = len(env.possible_agents)
    assert env.observation_spaces[env.possible_agents[-1]].shape == (state_dim + n,)
    obs, infos = env.reset(seed=3)
    for _ in range(5):
        raw = np.asarray(env.par_env.state(), dtype=np.float64)
        assert raw.shape == (state_dim,)
        share_obs = (raw - np.mean(raw)) / np.std(raw)
        for i, aid in enumerate(env.possible_agents):
            x = np.concatenate([raw, np.eye(n)[i]])
            expected = (x - np.mean(x)) / np.std(x)
            assert obs[aid].dtype == np.float32
            np.testing.assert_allclose(obs[aid], expected, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(
                infos[aid][GLOBAL_STATE_KEY], share_obs, rtol=1e-6, atol=1e-6
            )
            # not vacuous: appending the id after standardizing gives another observation
            appended = np.concatenate([share_obs, np.eye(n)[i]])
            assert np.abs(obs[aid] - appended).max() > 1e-2
        obs, _, _, _, infos = env.step(_random_actions(env))
    env.close()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"scenarios": "Ant"}, "Unknown env_config keys.*scenarios"),
        ({"scenario": "Cheetah"}, "scenario='Cheetah'.*HalfCheetah"),
        ({"scenario": "Ant", "agent_conf": "2x3"}, r"agent_conf='2x3'.*'Ant'.*'2x4d'"),
        ({"scenario": "ManySegmentAnt", "agent_conf": "2"}, r"agent_conf='2'.*<agents>x"),
        ({"agent_conf": None, "agent_factorization": {}}, "agent_conf=None.*agent_factorization"),
        ({"agent_obsk": -1}, "agent_obsk=-1.*non-negative int"),
        ({"agent_obsk": True}, "agent_obsk=True"),
        ({"agent_obsk": "1"}, "agent_obsk='1'"),
        ({"agent_obsk": None}, "agent_obsk=None.*agent_conf=None"),
        ({"agent_conf": "x", "agent_factorization": {"partition": []}}, "agent_factorization"),
        ({"obs_mode": "both"}, r"obs_mode='both'.*\['local', 'global'\]"),
        ({"render_mode": "human"}, "render_mode='human'"),
        ({"batched": "yes"}, "batched='yes'.*True or False"),
        ({"xml_file": 3}, "xml_file=3.*None or a MuJoCo model path"),
        ({"xml_file": ""}, "xml_file=''.*None or a MuJoCo model path"),
        ({"xml_file": "no_such.xml"}, "xml_file='no_such.xml'.*does not exist.*walker2d.xml"),
        (
            {"scenario": "ManySegmentAnt", "agent_conf": "2x1", "xml_file": "ant.xml"},
            "xml_file='ant.xml'.*'ManySegmentAnt'.*allowed: None",
        ),
    ],
)
def test_validation_errors(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_mamujoco_config(config)
    with pytest.raises(ValueError, match=match):
        make_mamujoco_env(config)


@pytest.mark.parametrize("xml_file", [None, "walker2d.xml"])
def test_xml_file_selects_the_model(xml_file: str | None) -> None:
    """Walker2d's foot frictions are those written in the model file the env was given (read
    here from the XML itself): v5's own file gives both feet 1.9, the v2-v4 file the right
    foot 0.9."""
    from gymnasium.envs.mujoco import mujoco_env

    env = make_mamujoco_env({"scenario": "Walker2d", "xml_file": xml_file})
    model = env.par_env.single_agent_env.unwrapped.model
    path = mujoco_env.expand_model_path(xml_file or "walker2d_v5.xml")
    written = {
        geom.get("name"): float(geom.get("friction").split()[0])
        for geom in ElementTree.parse(path).iter("geom")
        if geom.get("name") in ("foot_geom", "foot_left_geom")
    }
    assert written == (
        {"foot_geom": 0.9, "foot_left_geom": 1.9}
        if xml_file
        else {"foot_geom": 1.9, "foot_left_geom": 1.9}
    )
    for name, friction in written.items():
        assert model.geom(name).friction[0] == friction
    env.close()


def test_valid_table_matches_library() -> None:
    """Scenario list and agent_conf table agree with gymnasium_robotics' source."""
    library_scenarios = {
        *mujoco_multi._MUJOCO_GYM_ENVIROMENTS,
        "CoupledHalfCheetah",  # excluded on purpose: broken with mujoco>=4
        *SEGMENT_SCENARIOS,
    }
    assert library_scenarios == {*SCENARIOS, "CoupledHalfCheetah"}
    source = inspect.getsource(obsk.get_parts_and_edges)
    candidates = set(re.findall(r'partitioning == "([^"]+)"', source))
    for scenario, confs in VALID_AGENT_CONFS.items():
        accepted = set()
        for conf in candidates:
            try:
                obsk.get_parts_and_edges(scenario, conf)
                accepted.add(conf)
            except Exception:
                pass
        assert accepted == set(confs) - {None}, scenario


@pytest.mark.parametrize(
    ("scenario", "conf"),
    [(s, c) for s, confs in VALID_AGENT_CONFS.items() for c in confs]
    + [("ManySegmentSwimmer", "2x2"), ("ManySegmentAnt", "2x1")],
)
def test_each_valid_pair_constructs(scenario: str, conf: str | None) -> None:
    config = {"scenario": scenario, "agent_conf": conf}
    validate_mamujoco_config(config)
    env = make_mamujoco_env(config)
    obs, infos = env.reset(seed=0)
    _assert_library_action_mapping(env)
    env.step(_random_actions(env))
    assert set(obs) == set(env.possible_agents)
    env.close()


def _assert_library_action_mapping(env: ParallelStateEnv) -> None:
    """The env maps local actions to the global one exactly as the library's own method."""
    library = mujoco_multi.MultiAgentMujocoEnv.map_local_actions_to_global_action
    # multi-agent envs carry their own mapping (precomputed indices), not the library's loop
    assert ("map_local_actions_to_global_action" in vars(env.par_env)) == (len(env.agents) > 1)
    for _ in range(3):
        actions = _random_actions(env)
        ours = env.par_env.map_local_actions_to_global_action(actions)
        expected = library(env.par_env, actions)
        assert ours.dtype == expected.dtype
        np.testing.assert_array_equal(ours, expected)


def test_factorization_leaving_an_actuator_undriven_is_rejected() -> None:
    factorization = single_joint_factorization("Walker2d")
    factorization["partition"] = factorization["partition"][:-1]
    with pytest.raises(ValueError, match="every one of the 6 actuators.*exactly one body part"):
        make_mamujoco_env(
            {"scenario": "Walker2d", "agent_conf": "5x1", "agent_factorization": factorization}
        )


@pytest.mark.parametrize(("scenario", "n_agents"), [("Walker2d", 6), ("Humanoid", 17)])
def test_agent_factorization(scenario: str, n_agents: int) -> None:
    factorization = single_joint_factorization(scenario)
    env = make_mamujoco_env(
        {"scenario": scenario, "agent_conf": f"{n_agents}x1", "agent_factorization": factorization}
    )
    assert len(env.possible_agents) == n_agents
    assert all(space.shape == (1,) for space in env.action_spaces.values())
    obs, _ = env.reset(seed=0)
    _assert_library_action_mapping(env)
    _, rews, _, _, infos = env.step(_random_actions(env))
    assert set(rews) == set(env.possible_agents)
    assert infos["agent_0"][GLOBAL_STATE_KEY].shape == env.state_space.shape
    env.close()
