"""Copies of a team env stepped in lockstep, with numpy batches in and out.

A team env is a :class:`ParallelStateEnv` (or any RLlib ``MultiAgentEnv`` like it): every
agent acts at every step and every agent's info carries the global state under
:data:`GLOBAL_STATE_KEY`. :class:`TeamVectorEnv` steps ``num_envs`` copies of it with one
batch of actions per agent and returns one batch of observations per agent, the global states,
the rewards and the episode ends, so its user never touches per-copy dicts.

A copy whose episode ends is reset within the same step: the returned observations and state
are its new episode's first ones, and the state after its last step is returned separately as
that episode's final (bootstrap) state.

An env may step its copies faster itself: :func:`make_team_vector_env` asks one copy for
:data:`BATCHED_COPIES_HOOK` (``make_batched_copies(num_envs)``), which returns an object with
`TeamVectorEnv`'s interface, or None to keep `TeamVectorEnv` (MaMuJoCo offers it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rllib_hatrpo.envs.parallel_state_env import GLOBAL_STATE_KEY
from rllib_hatrpo.envs.team_step import Batch, Obs, TeamStep

BATCHED_COPIES_HOOK = "make_batched_copies"
"""The optional env attribute ``make_batched_copies(num_envs) -> TeamVectorEnv-like | None``."""


class TeamVectorEnv:
    """`num_envs` copies of a team env, stepped one after the other in this process.

    Args:
        make_env: Builds one copy.
        num_envs: Number of copies, >= 1.

    Attributes:
        envs: The copies.
        agents: The agents, in the env's `possible_agents` order (every copy has the same).
        observation_spaces, action_spaces: Per agent, one copy's spaces.
    """

    def __init__(
        self,
        make_env: Callable[[], MultiAgentEnv],
        num_envs: int,
        first: MultiAgentEnv | None = None,
    ) -> None:
        first = make_env() if first is None else first
        self.envs = [first, *(make_env() for _ in range(num_envs - 1))]
        self.agents: list[str] = list(first.possible_agents)
        self.observation_spaces: dict[str, gym.Space] = {
            a: first.get_observation_space(a) for a in self.agents
        }
        self.action_spaces: dict[str, gym.Space] = {
            a: first.get_action_space(a) for a in self.agents
        }
        self._agent_set = set(self.agents)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Batch:
        """Resets every copy; with `seed`, copy i with `seed + i` (as RLlib's vector envs)."""
        results = [
            env.reset(seed=None if seed is None else seed + i, options=options)
            for i, env in enumerate(self.envs)
        ]
        return self._batch([obs for obs, _ in results], [infos for _, infos in results])

    def step(self, actions: dict[str, np.ndarray]) -> TeamStep:
        """Steps copy i with row i of every agent's actions; resets the copies that are done.

        Raises:
            ValueError: If a copy's step leaves out an agent (every agent must act at every
                step).
        """
        n = self.num_envs
        rewards = np.empty((n, len(self.agents)))
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_states: dict[int, np.ndarray] = {}
        all_obs, all_infos = [], []
        for i, env in enumerate(self.envs):
            obs, agent_rewards, terminateds, truncateds, infos = env.step(
                {a: actions[a][i] for a in self.agents}
            )
            if obs.keys() != self._agent_set or agent_rewards.keys() != self._agent_set:
                raise ValueError(
                    f"Every agent must act at every env step, but a step of env copy {i} "
                    f"returned observations for {sorted(obs)} and rewards for "
                    f"{sorted(agent_rewards)} (agents: {self.agents})."
                )
            rewards[i] = [agent_rewards[a] for a in self.agents]
            if terminateds["__all__"] or truncateds["__all__"]:
                terminated[i] = terminateds["__all__"]
                truncated[i] = not terminated[i]
                final_states[i] = self._state(infos)
                obs, infos = env.reset()
            all_obs.append(obs)
            all_infos.append(infos)
        obs, states = self._batch(all_obs, all_infos)
        return TeamStep(obs, states, rewards, terminated, truncated, final_states)

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _state(self, infos: dict[str, Any]) -> np.ndarray:
        """The global state (the same in every agent's info)."""
        return infos[self.agents[0]][GLOBAL_STATE_KEY]

    def _batch(self, obs: Sequence[dict[str, Any]], infos: Sequence[dict[str, Any]]) -> Batch:
        """Stacks the copies' observations per agent (per part for masked ones) and states."""
        batched: dict[str, Obs] = {}
        for a in self.agents:
            if isinstance(obs[0][a], dict):
                batched[a] = {k: np.stack([o[a][k] for o in obs]) for k in obs[0][a]}
            else:
                batched[a] = np.stack([o[a] for o in obs])
        return batched, np.stack([self._state(i) for i in infos]).astype(np.float32, copy=False)


def make_team_vector_env(make_env: Callable[[], MultiAgentEnv], num_envs: int) -> Any:
    """`num_envs` copies of `make_env()`'s env: the env's own batched copies where it offers
    them (:data:`BATCHED_COPIES_HOOK`), else a `TeamVectorEnv`."""
    first = make_env()
    batched_copies = getattr(first, BATCHED_COPIES_HOOK, None)
    batched = batched_copies(num_envs) if callable(batched_copies) else None
    if batched is None:
        return TeamVectorEnv(make_env, num_envs, first=first)
    first.close()
    return batched
