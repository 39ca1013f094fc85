"""What an EnvRunner hands the learner: consecutive env steps of one env copy, as numpy arrays.

Every agent of a team env acts at every env step, so one fragment holds the same T steps for
all agents, row-aligned: row t of every agent's observations and actions, of the rewards and of
the global states is the same env step. A fragment is self-contained (its own bootstrap state
and end flag), so fragments can be shuffled between learners whole and GAE stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tree

from rllib_hatrpo.envs.team_step import Obs


def concat_rows(parts: list[Any]) -> Any:
    """Row blocks concatenated: arrays, or (masked observations) dicts of arrays alike."""
    return tree.map_structure(lambda *blocks: np.concatenate(blocks), *parts)


@dataclass(eq=False)  # compared by identity: elementwise array equality has no truth value
class TeamFragment:
    """T consecutive env steps of one env copy, every agent acting at every step.

    A fragment ends where its episode ended (terminated or truncated) or where the batch was
    cut; only a terminated one has no bootstrap value (V of its last state counts as 0), and a
    truncated one may drop its last transition instead (`truncation_bootstrap="drop_last"`).

    Attributes:
        obs: Per agent, the T observations the agent acted on (an action mask beside them for
            masked agents).
        actions: Per agent, the T actions the policy module sampled (before they were mapped
            into the env's action space: unsquashed or clipped).
        states: T + 1 global states (float32): the state of each step's observations, then the
            state after the last step (the bootstrap state of a truncated or cut fragment).
        rewards: T team rewards (float64): the mean over the agents of their rewards.
        terminated: Whether the episode ended by termination after the last step.
        truncated: Whether the episode ended by truncation (a time limit) after the last step;
            False for a fragment cut by the batch's end.
    """

    obs: dict[str, Obs]
    actions: dict[str, np.ndarray]
    states: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.rewards)

    def env_steps(self) -> int:
        """The env steps this fragment holds (RLlib's counting interface)."""
        return len(self.rewards)

    def agent_steps(self) -> int:
        """Env steps times agents: every agent acts at every step."""
        return len(self.rewards) * len(self.actions)
