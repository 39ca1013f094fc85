"""Small PettingZoo parallel envs for tests: fast, with a global state and a known optimum."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from pettingzoo.utils.env import ParallelEnv

from rllib_hatrpo.envs import ParallelStateEnv

TARGETS = np.array([-0.5, 0.5])


def team_step_result(env, obs, rewards, *, terminated=False, truncated=False, info=None):
    """PettingZoo's step return for a team whose agents all end together (each agent gets a
    copy of `info`); the env's `agents` list is emptied when the episode ends."""
    agents = env.agents
    result = (
        obs,
        rewards,
        {a: terminated for a in agents},
        {a: truncated for a in agents},
        {a: dict(info or {}) for a in agents},
    )
    if terminated or truncated:
        env.agents = []
    return result


class RedrawEnv(ParallelEnv):
    """Two agents whose observations are redrawn (`_draw`) at every reset and step."""

    possible_agents = ["a0", "a1"]

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t = 0
        self._draw()
        return self._obs(), {a: {} for a in self.agents}


class SumTargetEnv(RedrawEnv):
    """Two agents each see a one-hot context c_i selecting a target x_i = ±0.5; the team earns
    −(a_0 + a_1 − x_0 − x_1)², so each must output its own target. Contexts are redrawn every
    step, so an action only affects its own reward (with gamma=0 the advantage is exactly
    r − V(s)). Episodes last `episode_len` steps and end by truncation. The untrained policy
    (mean ≈ 0, std ≈ 0.37) earns about −0.77 per step; the optimum approaches 0.
    """

    metadata = {"name": "sum_target"}

    def __init__(self, episode_len: int = 50, agent_spaces_differ: bool = False):
        self.possible_agents = ["a0", "a1"]
        self.agents = []
        self.episode_len = episode_len
        self._obs_dims = {"a0": 2, "a1": 3 if agent_spaces_differ else 2}
        self._rng = np.random.default_rng(0)
        self._context = np.zeros(2, dtype=int)
        self._t = 0

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1.0, (self._obs_dims[agent],), np.float32)

    def action_space(self, agent):
        return gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def state(self):
        return np.eye(2, dtype=np.float32)[self._context].reshape(-1)

    def _obs(self):
        return {
            a: np.eye(self._obs_dims[a], dtype=np.float32)[self._context[i]]
            for i, a in enumerate(self.possible_agents)
        }

    def _draw(self):
        self._context = self._rng.integers(0, 2, size=2)

    def step(self, actions):
        total = sum(float(np.clip(actions[a], -1, 1)[0]) for a in self.agents)
        reward = -((total - TARGETS[self._context].sum()) ** 2)
        self._t += 1
        self._draw()
        rewards = {a: reward for a in self.agents}
        return team_step_result(self, self._obs(), rewards, truncated=self._t >= self.episode_len)


def make_sum_target(config: dict) -> ParallelStateEnv:
    return ParallelStateEnv(SumTargetEnv(**dict(config)))


class LateStateEnv(SumTargetEnv):
    """SumTargetEnv without a `state_space` whose state() works only after reset(), as in
    PettingZoo envs that build their state there: before it, state() raises AttributeError.
    With `broken_state=True` state() always raises RuntimeError."""

    metadata = {"name": "late_state"}

    def __init__(self, broken_state: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.broken_state = broken_state

    def reset(self, seed=None, options=None):
        self._world = np.zeros(3, np.float32)  # what state() needs; exists only after reset()
        return super().reset(seed=seed, options=options)

    def state(self):
        if self.broken_state:
            raise RuntimeError("the simulator is not connected")
        return np.concatenate([super().state(), self._world])


def make_late_state(config: dict) -> ParallelStateEnv:
    return ParallelStateEnv(LateStateEnv(**dict(config)))


class MaskedChoiceEnv(RedrawEnv):
    """Two agents pick one of 4 actions under a random action mask; the team earns the mean
    of the chosen actions' values, where the masked-out actions would pay the most. A policy
    that honours the mask learns to pick the best allowed action."""

    metadata = {"name": "masked_choice"}
    VALUES = np.array([0.0, 0.5, 1.0, 10.0])

    def __init__(self, episode_len: int = 20):
        self.possible_agents = ["a0", "a1"]
        self.agents = []
        self.episode_len = episode_len
        self._rng = np.random.default_rng(0)
        self._masks = {}
        self._t = 0
        self._draw()

    def observation_space(self, agent):
        return gym.spaces.Dict(
            {
                "observation": gym.spaces.Box(0.0, 1.0, (4,), np.float32),
                "action_mask": gym.spaces.MultiBinary(4),
            }
        )

    def action_space(self, agent):
        return gym.spaces.Discrete(4)

    def state(self):
        return np.concatenate([self._masks[a] for a in self.possible_agents]).astype(np.float32)

    def _draw(self):
        for a in self.possible_agents:
            mask = np.zeros(4, np.int8)
            mask[self._rng.choice(3, size=2, replace=False)] = 1  # action 3 is never allowed
            self._masks[a] = mask

    def _obs(self):
        return {
            a: {"observation": self._masks[a].astype(np.float32), "action_mask": self._masks[a]}
            for a in self.possible_agents
        }

    def step(self, actions):
        violations = sum(int(self._masks[a][actions[a]] == 0) for a in self.agents)
        reward = float(np.mean([self.VALUES[actions[a]] for a in self.agents]))
        self._t += 1
        self._draw()
        rewards = {a: reward for a in self.agents}
        return team_step_result(
            self,
            self._obs(),
            rewards,
            truncated=self._t >= self.episode_len,
            info={"violations": violations},
        )


def make_masked_choice(config: dict) -> ParallelStateEnv:
    return ParallelStateEnv(MaskedChoiceEnv(**dict(config)))


class EpisodeEndsEnv(ParallelEnv):
    """Two agents with different spaces (a0: Box(-2, 2) actions, a1: Discrete(3)) and episodes
    of a random length L in [2, 6]: an even L ends by termination, an odd one by truncation.

    At step t (1-based) a0 earns t and a1 earns 2t, so an episode's returns are L(L+1)/2 and
    L(L+1) whatever the actions. The state is [t, L, a random draw of the episode, the last
    actions as the env received them], so every row of a rollout can be checked.
    """

    metadata = {"name": "episode_ends"}

    def __init__(self, min_len: int = 2, max_len: int = 6):
        self.possible_agents = ["a0", "a1"]
        self.agents = []
        self.min_len, self.max_len = min_len, max_len
        self._rng = np.random.default_rng(0)
        self._t, self._len, self._draw = 0, min_len, 0.0
        self._last = (0.0, 0)

    def observation_space(self, agent):
        return gym.spaces.Box(-np.inf, np.inf, (2 if agent == "a0" else 3,), np.float32)

    def action_space(self, agent):
        return (
            gym.spaces.Box(-2.0, 2.0, (1,), np.float32) if agent == "a0" else gym.spaces.Discrete(3)
        )

    def state(self):
        return np.array([self._t, self._len, self._draw, *self._last], dtype=np.float32)

    def _obs(self):
        return {
            "a0": np.array([self._t, self._draw], np.float32),
            "a1": np.array([self._t, self._len, self._draw], np.float32),
        }

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t, self._last = 0, (0.0, 0)
        self._len = int(self._rng.integers(self.min_len, self.max_len + 1))
        self._draw = float(self._rng.normal())
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self._t += 1
        self._last = (float(actions["a0"][0]), int(actions["a1"]))
        done = self._t >= self._len
        terminated = done and self._len % 2 == 0
        rewards = {"a0": float(self._t), "a1": 2.0 * self._t}
        return team_step_result(
            self, self._obs(), rewards, terminated=terminated, truncated=done and not terminated
        )


def make_episode_ends(config: dict) -> ParallelStateEnv:
    return ParallelStateEnv(EpisodeEndsEnv(**dict(config)))
