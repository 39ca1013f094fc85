"""Tests of the generic PettingZoo wrapper, the MPE tasks and the single-agent wrapper."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from mpe2 import simple_speaker_listener_v4, simple_spread_v3
from pettingzoo.utils.env import ParallelEnv
from ray.rllib.utils.pre_checks.env import check_multiagent_environments
from ray.tune.registry import ENV_CREATOR, _global_registry, register_env
from toy_envs import LateStateEnv, make_late_state

from rllib_hatrpo import HAPPOConfig
from rllib_hatrpo.envs import (
    GLOBAL_STATE_KEY,
    MPE_ENVS,
    SINGLE_AGENT_ENV,
    ParallelStateEnv,
    make_mpe_env,
    make_pettingzoo_env,
    make_single_agent_env,
    register_envs,
)


def _random_actions(env: ParallelStateEnv) -> dict[str, Any]:
    return {aid: env.action_spaces[aid].sample() for aid in env.agents}


class _NoStateEnv(ParallelEnv):
    """No state(). "a": Box (2, 2) float64 obs; "b": Discrete(3) obs, terminates at step 1."""

    metadata = {"name": "no_state_v0"}

    def __init__(self, action_space: gym.Space | None = None, obs_b: gym.Space | None = None):
        self.possible_agents = ["a", "b"]
        self.agents: list[str] = []
        self.t = 0
        self._action_space = action_space or gym.spaces.Discrete(2)
        self._obs_b = obs_b or gym.spaces.Discrete(3)

    def observation_space(self, agent: str) -> gym.Space:
        if agent == "a":
            return gym.spaces.Box(-10.0, 10.0, shape=(2, 2), dtype=np.float64)
        return self._obs_b

    def action_space(self, agent: str) -> gym.Space:
        return self._action_space if agent == "b" else gym.spaces.Discrete(2)

    def _obs(self, agents: list[str]) -> dict[str, Any]:
        return {a: np.full((2, 2), self.t + 0.5) if a == "a" else self.t + 1 for a in agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        self.t += 1
        live = list(self.agents)
        terms = {a: a == "b" or self.t >= 2 for a in live}
        self.agents = [a for a in live if not terms[a]]
        rews = dict.fromkeys(live, 1.0)
        return self._obs(live), rews, terms, dict.fromkeys(live, False), {a: {} for a in live}


# --- MPE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("continuous", [False, True])
def test_simple_spread(continuous: bool) -> None:
    env = MPE_ENVS["simple_spread_v3"]({"continuous_actions": continuous})
    agents = ["agent_0", "agent_1", "agent_2"]
    assert env.possible_agents == agents
    for aid in agents:
        assert env.observation_spaces[aid] == gym.spaces.Box(-np.inf, np.inf, (18,), np.float32)
        expected = gym.spaces.Box(0.0, 1.0, (5,), np.float32) if continuous else None
        assert env.action_spaces[aid] == (expected or gym.spaces.Discrete(5))
    assert env.state_space == gym.spaces.Box(-np.inf, np.inf, (54,), np.float32)
    for aid in agents:
        env.action_spaces[aid].seed(0)

    obs, infos = env.reset(seed=0)
    for step in range(1, 26):
        for aid in agents:
            assert obs[aid].dtype == np.float32 and obs[aid].shape == (18,)
            state = infos[aid][GLOBAL_STATE_KEY]
            assert state.dtype == np.float32
            np.testing.assert_array_equal(state, env.par_env.state().astype(np.float32))
        obs, rews, terms, truncs, infos = env.step(_random_actions(env))
        assert set(rews) == set(agents) and all(type(r) is float for r in rews.values())
        assert truncs["__all__"] is (step == 25) and terms["__all__"] is False
    assert truncs == {**dict.fromkeys(agents, True), "__all__": True}
    assert env.agents == agents
    check_multiagent_environments(env)
    env.close()


def test_simple_spread_config_is_passed() -> None:
    env = make_mpe_env("simple_spread_v3", {"N": 2, "max_cycles": 3, "local_ratio": 0.0})
    assert env.possible_agents == ["agent_0", "agent_1"]
    assert env.par_env.unwrapped.local_ratio == 0.0
    env.reset(seed=1)
    truncs = [env.step(_random_actions(env))[3]["__all__"] for _ in range(3)]
    assert truncs == [False, False, True]


def test_simple_speaker_listener_is_heterogeneous() -> None:
    env = MPE_ENVS["simple_speaker_listener_v4"]({})
    assert env.possible_agents == ["speaker_0", "listener_0"]
    assert env.observation_spaces["speaker_0"].shape == (3,)
    assert env.observation_spaces["listener_0"].shape == (11,)
    assert env.action_spaces == {
        "speaker_0": gym.spaces.Discrete(3),
        "listener_0": gym.spaces.Discrete(5),
    }
    assert env.state_space.shape == (14,)
    obs, infos = env.reset(seed=0)
    np.testing.assert_array_equal(
        infos["listener_0"][GLOBAL_STATE_KEY], np.concatenate([obs["speaker_0"], obs["listener_0"]])
    )
    check_multiagent_environments(env)
    continuous = MPE_ENVS["simple_speaker_listener_v4"]({"continuous_actions": True})
    assert continuous.action_spaces["speaker_0"].shape == (3,)
    assert continuous.action_spaces["listener_0"].shape == (5,)


@pytest.mark.parametrize(
    ("name", "config", "match"),
    [
        ("simple_spread_v3", {"n": 3}, r"Unknown env_config keys \['n'\].*allowed.*'N'"),
        ("simple_speaker_listener_v4", {"N": 2}, r"Unknown env_config keys \['N'\]"),
        ("simple_spread_v3", {"N": 0}, r"N=0 .*int >= 1"),
        ("simple_spread_v3", {"local_ratio": 1.5}, r"local_ratio=1.5 .*\[0, 1\]"),
        ("simple_spread_v3", {"max_cycles": 2.5}, "max_cycles=2.5"),
        ("simple_speaker_listener_v4", {"continuous_actions": 1}, "continuous_actions=1"),
        ("simple_spread_v3", {"render_mode": "human"}, "render_mode='human'"),
        ("simple_tag_v3", {}, "simple_tag_v3.*allowed.*simple_spread_v3"),
    ],
)
def test_mpe_config_errors(name: str, config: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_mpe_env(name, config)


def test_register_envs() -> None:
    register_envs()
    for name in ("mamujoco", *MPE_ENVS, SINGLE_AGENT_ENV):
        assert _global_registry.contains(ENV_CREATOR, name)


# --- generic PettingZoo wrapper --------------------------------------------------------------


@pytest.mark.parametrize(
    "env", [simple_spread_v3.env, simple_spread_v3.env(), 42], ids=["aec_fn", "aec", "int"]
)
def test_non_parallel_env_is_rejected(env: Any) -> None:
    kind = "int" if env == 42 else "AECEnv"
    with pytest.raises(ValueError, match=f"not a PettingZoo ParallelEnv \\(got {kind}.*aec_to_par"):
        make_pettingzoo_env(env)
    if env != 42 and not callable(env):
        with pytest.raises(ValueError, match="not a PettingZoo ParallelEnv"):
            ParallelStateEnv(env)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"action_space": gym.spaces.MultiDiscrete([2, 3])},
            r"agent 'b': action space MultiDiscrete\(\[2 3\]\) is not supported; "
            "allowed: Box, Discrete",
        ),
        ({"action_space": gym.spaces.Discrete(2, start=1)}, "agent 'b'.*must start at 0"),
        (
            {
                "obs_b": gym.spaces.Dict(
                    {
                        "observation": gym.spaces.Box(0, 1, (2,)),
                        "goal": gym.spaces.MultiBinary(2),
                    }
                )
            },
            "agent 'b': observation space Dict.*not supported.*action_mask=Box|MultiBinary",
        ),
    ],
)
def test_unsupported_spaces_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_pettingzoo_env(_NoStateEnv, **kwargs)


def test_concat_obs_state(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rllib_hatrpo.envs.pettingzoo_env"):
        env = make_pettingzoo_env(_NoStateEnv)
    assert "'no_state_v0' has no state()" in caplog.text
    assert "concatenation" in caplog.text
    assert env.observation_spaces == {
        "a": gym.spaces.Box(-10.0, 10.0, (4,), np.float32),
        "b": gym.spaces.Box(0.0, 1.0, (3,), np.float32),
    }
    assert env.state_space.shape == (7,) and env.state_space.dtype == np.float32

    obs, infos = env.reset(seed=0)
    np.testing.assert_array_equal(obs["a"], np.full(4, 0.5, np.float32))
    np.testing.assert_array_equal(obs["b"], [0, 1, 0])  # Discrete obs one-hot
    for aid in ("a", "b"):
        state = infos[aid][GLOBAL_STATE_KEY]
        assert state.dtype == np.float32
        np.testing.assert_array_equal(state, np.concatenate([obs["a"], obs["b"]]))
    obs, _, _, _, infos = env.step({"a": 0, "b": 1})
    np.testing.assert_array_equal(infos["b"][GLOBAL_STATE_KEY], [1.5] * 4 + [0, 0, 1])
    obs, _, terms, _, infos = env.step({"a": 0})
    assert set(obs) == {"a"} and terms["__all__"] is True
    # An agent without an observation in the step contributes zeros.
    np.testing.assert_array_equal(infos["a"][GLOBAL_STATE_KEY], [2.5] * 4 + [0, 0, 0])
    check_multiagent_environments(env)


def test_global_state_modes(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="'no_state_v0' must implement state"):
        make_pettingzoo_env(_NoStateEnv(), global_state="state")
    with pytest.raises(ValueError, match=r"global_state='obs'.*'auto', 'state', 'concat_obs'"):
        make_pettingzoo_env(_NoStateEnv(), global_state="obs")
    with pytest.raises(ValueError, match=r"kwargs \['N'\] are only allowed"):
        make_pettingzoo_env(simple_spread_v3.parallel_env(), N=2)
    with caplog.at_level(logging.WARNING):
        env = make_pettingzoo_env(simple_spread_v3.parallel_env, N=2)  # auto: has state()
    assert caplog.text == ""
    assert env.possible_agents == ["agent_0", "agent_1"] and env.state_space.shape == (24,)
    _, infos = env.reset(seed=0)
    np.testing.assert_array_equal(infos["agent_0"][GLOBAL_STATE_KEY], env.par_env.state())
    concat = make_pettingzoo_env(simple_speaker_listener_v4.parallel_env(), "concat_obs")
    obs, infos = concat.reset(seed=0)
    np.testing.assert_array_equal(
        infos["speaker_0"][GLOBAL_STATE_KEY], np.concatenate([obs["speaker_0"], obs["listener_0"]])
    )


def test_state_is_read_only_after_reset() -> None:
    with pytest.raises(AttributeError, match="_world"):
        LateStateEnv().state()  # the env itself needs a reset() first
    for env in (ParallelStateEnv(LateStateEnv()), make_pettingzoo_env(LateStateEnv())):
        assert env.state_space == gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)
        _, infos = env.reset(seed=0)
        np.testing.assert_array_equal(infos["a0"][GLOBAL_STATE_KEY], env.par_env.state())
        _, _, _, _, infos = env.step(_random_actions(env))
        assert infos["a1"][GLOBAL_STATE_KEY].shape == (7,)
        check_multiagent_environments(env)


@pytest.mark.usefixtures("ray_session")
def test_env_whose_state_needs_a_reset_trains() -> None:
    register_env("late_state", make_late_state)
    config = (
        HAPPOConfig()
        .environment("late_state", env_config={"episode_len": 10})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=40, hidden_sizes=[8])
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 40


def test_state_that_raises_names_the_env_and_the_error() -> None:
    match = r"'late_state': state\(\) raised RuntimeError: the simulator is not connected"
    with pytest.raises(ValueError, match=match) as err:
        ParallelStateEnv(LateStateEnv(broken_state=True))
    assert isinstance(err.value.__cause__, RuntimeError)
    with pytest.raises(ValueError, match=match):
        make_pettingzoo_env(LateStateEnv, broken_state=True)  # global_state="auto"


# --- single-agent Gymnasium envs -----------------------------------------------------------


def test_single_agent_pendulum() -> None:
    env = make_single_agent_env({"env": "Pendulum-v1"})
    assert env.possible_agents == ["agent_0"]
    obs_space = env.observation_spaces["agent_0"]
    assert obs_space.dtype == np.float32 and obs_space.shape == (3,)
    assert env.state_space == obs_space
    assert env.action_spaces["agent_0"] == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    env.action_spaces["agent_0"].seed(0)
    obs, infos = env.reset(seed=0)
    for step in range(1, 201):
        assert obs["agent_0"].dtype == np.float32
        np.testing.assert_array_equal(infos["agent_0"][GLOBAL_STATE_KEY], obs["agent_0"])
        obs, rews, terms, truncs, infos = env.step(_random_actions(env))
        assert type(rews["agent_0"]) is float
        assert truncs["__all__"] is (step == 200) and terms["__all__"] is False
    assert truncs == {"agent_0": True, "__all__": True}
    check_multiagent_environments(env)
    env.close()


def test_single_agent_cartpole_terminates_and_renders() -> None:
    env = make_single_agent_env({"env": "CartPole-v1", "render_mode": "rgb_array"})
    assert env.action_spaces["agent_0"] == gym.spaces.Discrete(2)
    assert env.render_mode == "rgb_array"
    env.reset(seed=0)
    assert env.render().shape == (400, 600, 3)
    for _ in range(100):  # always pushing left topples the pole within a few dozen steps
        _, _, terms, truncs, _ = env.step({"agent_0": 0})
        if terms["__all__"]:
            break
    assert terms == {"agent_0": True, "__all__": True}
    assert truncs == {"agent_0": False, "__all__": False}
    check_multiagent_environments(env)
    env.close()


def test_single_agent_class_and_discrete_obs() -> None:
    from gymnasium.envs.classic_control import PendulumEnv

    env = make_single_agent_env({"env": PendulumEnv, "g": 3.0})
    assert env.par_env.env.g == 3.0
    lake = make_single_agent_env({"env": "FrozenLake-v1", "is_slippery": False})
    assert lake.observation_spaces["agent_0"] == gym.spaces.Box(0.0, 1.0, (16,), np.float32)
    obs, infos = lake.reset(seed=0)
    np.testing.assert_array_equal(obs["agent_0"], np.eye(16, dtype=np.float32)[0])
    np.testing.assert_array_equal(infos["agent_0"][GLOBAL_STATE_KEY], obs["agent_0"])


class _MultiDiscreteEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 2])


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({}, r"env_config\['env'\] is missing"),
        ({"env": "NoSuchEnv-v0"}, r"env_config\['env'\]='NoSuchEnv-v0' is not a registered"),
        ({"env": 42}, r"env_config\['env'\]=42 is invalid"),
        ({"env": _MultiDiscreteEnv}, "agent 'agent_0': action space MultiDiscrete"),
    ],
)
def test_single_agent_errors(config: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_single_agent_env(config)
