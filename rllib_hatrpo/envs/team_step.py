"""What one step of many copies of a team env returns, as numpy batches (rows = copies).

Defined with the envs, so that an env stepping its copies itself (`batched_mamujoco`) and the
sampler's `TeamVectorEnv` return the same thing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Obs = np.ndarray | dict[str, np.ndarray]
"""An agent's observation rows: an array, or {"observation": rows, "action_mask": rows}."""

Batch = tuple[dict[str, Obs], np.ndarray]
"""Observations per agent (rows = copies) and the global states (float32, rows = copies)."""


@dataclass
class TeamStep:
    """The result of one step of every copy (rows = copies, agents in the env's order).

    Attributes:
        obs: Per agent, the observations to act on next (a reset copy's first ones).
        states: The global states of those observations.
        rewards: (copies, agents) float64 rewards of this step.
        terminated: The copy's episode ended by termination in this step.
        truncated: The copy's episode ended by truncation in this step.
        final_states: Copy index -> global state after its episode's last step, for the copies
            whose episode ended in this step.
    """

    obs: dict[str, Obs]
    states: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_states: dict[int, np.ndarray]
