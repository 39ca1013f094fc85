"""The rows one `TeamEnvRunner.sample()` call writes, preallocated, and the fragments cut from
them."""

from __future__ import annotations

import numpy as np
import tree

from rllib_hatrpo.envs.team_step import Obs, TeamStep
from rllib_hatrpo.sampling.team_fragment import TeamFragment


class Rollout:
    """The rows of one `sample()` call: row t of every array is step t of every copy.

    `obs` and `states` have one row more than steps taken (the observations after the last
    step); arrays double their rows whenever a `num_episodes` call needs more.
    """

    def __init__(self, obs: dict[str, Obs], states: np.ndarray, capacity: int) -> None:
        self.obs = tree.map_structure(lambda x: _empty_rows(x, capacity + 1), obs)
        self.states = _empty_rows(states, capacity + 1)
        self.actions: dict[str, np.ndarray] = {}
        self.rewards = np.empty((capacity, len(states)))
        self.capacity = capacity
        self._starts = np.zeros(len(states), dtype=np.int64)  # first row of each copy's fragment
        self._write_obs(0, obs, states)

    def obs_at(self, t: int) -> dict[str, Obs]:
        """Every agent's observations of step t (rows = copies)."""
        return tree.map_structure(lambda x: x[t], self.obs)

    def write(self, t: int, actions: dict[str, np.ndarray], step: TeamStep) -> None:
        """Step t's actions and team rewards, and the observations after it (row t + 1)."""
        if t == self.capacity:
            self._grow()
        for agent, rows in actions.items():
            if agent not in self.actions:
                self.actions[agent] = _empty_rows(rows, self.capacity)
            self.actions[agent][t] = rows
        self.rewards[t] = step.rewards.mean(axis=1)
        self._write_obs(t + 1, step.obs, step.states)

    def end_episode(self, t: int, i: int, step: TeamStep) -> TeamFragment:
        """Copy i's fragment up to its episode's end at step t; its next one starts at t + 1."""
        fragment = self._fragment(
            i, t + 1, step.final_states[i], bool(step.terminated[i]), bool(step.truncated[i])
        )
        self._starts[i] = t + 1
        return fragment

    def cut_fragments(self, num_steps: int) -> list[TeamFragment]:
        """Each copy's steps after its last episode end, bootstrapped from the state after them."""
        return [
            self._fragment(i, num_steps, self.states[num_steps, i], False, False)
            for i in range(len(self._starts))
            if self._starts[i] < num_steps
        ]

    def _fragment(
        self, i: int, stop: int, final_state: np.ndarray, terminated: bool, truncated: bool
    ) -> TeamFragment:
        rows = slice(int(self._starts[i]), stop)
        return TeamFragment(
            obs=tree.map_structure(lambda x: x[rows, i].copy(), self.obs),
            actions={a: x[rows, i].copy() for a, x in self.actions.items()},
            states=np.concatenate([self.states[rows, i], final_state[None]]),
            rewards=self.rewards[rows, i].copy(),
            terminated=terminated,
            truncated=truncated,
        )

    def _write_obs(self, t: int, obs: dict[str, Obs], states: np.ndarray) -> None:
        def write(buffer: np.ndarray, rows: np.ndarray) -> None:
            buffer[t] = rows

        tree.map_structure(write, self.obs, obs)
        self.states[t] = states

    def _grow(self) -> None:
        def grow(x: np.ndarray) -> np.ndarray:
            return np.concatenate([x, np.empty_like(x[: self.capacity])])

        self.obs = tree.map_structure(grow, self.obs)
        self.states = grow(self.states)
        self.actions = {a: grow(x) for a, x in self.actions.items()}
        self.rewards = grow(self.rewards)
        self.capacity *= 2


def _empty_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """Room for `n` rows shaped and typed like `rows` (one row per copy)."""
    return np.empty((n, *rows.shape), dtype=rows.dtype)
