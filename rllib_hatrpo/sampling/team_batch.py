"""Learner connector: the EnvRunners' team fragments → one row-aligned `TeamBatch`.

RLlib's default learner pipeline batches each module separately; the sequential update needs
all agents' rows aligned on the same env steps (row r of every agent is the same env and time
step), the global state of every observation, and one team reward per step. `TeamEnvRunner`
samples exactly that per fragment (`TeamFragment`); this piece concatenates the fragments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.utils.annotations import override

from rllib_hatrpo.sampling.team_fragment import Obs, TeamFragment, concat_rows

TEAM_BATCH = "team_batch"
"""The learner connector's output key holding the `TeamBatch`."""


@dataclass(eq=False)
class TeamBatch:
    """N env steps of K non-empty fragments, fragment by fragment, time-ordered.

    Attributes:
        obs: Per agent, N observation rows (an action mask beside them for masked agents).
        actions: Per agent, N action rows.
        states: N + K global states (each fragment's T observations' states, then the state
            after its last step).
        rewards: N team rewards (the mean of the agents' rewards).
        fragment_lengths: K fragment lengths T.
        terminated: K flags: whether each fragment's episode ended by termination.
        truncated: K flags: whether each fragment's episode ended by truncation.
    """

    obs: dict[str, Obs]
    actions: dict[str, np.ndarray]
    states: np.ndarray
    rewards: np.ndarray
    fragment_lengths: list[int]
    terminated: list[bool]
    truncated: list[bool]

    @classmethod
    def from_fragments(cls, fragments: list[TeamFragment]) -> TeamBatch:
        """The fragments' rows concatenated (empty fragments left out)."""
        fragments = [f for f in fragments if len(f)]
        if not fragments:
            raise ValueError("TeamBatch received no env steps.")
        agents = list(fragments[0].actions)
        return cls(
            obs={a: concat_rows([f.obs[a] for f in fragments]) for a in agents},
            actions={a: np.concatenate([f.actions[a] for f in fragments]) for a in agents},
            states=np.concatenate([f.states for f in fragments]),
            rewards=np.concatenate([f.rewards for f in fragments]),
            fragment_lengths=[len(f) for f in fragments],
            terminated=[f.terminated for f in fragments],
            truncated=[f.truncated for f in fragments],
        )


class TeamBatchBuilder(ConnectorV2):
    """Writes `batch[TEAM_BATCH]`: the `TeamBatch` of the fragments RLlib passes as `episodes`
    (RLlib's name for what EnvRunners sample)."""

    @override(ConnectorV2)
    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list[TeamFragment],
        **kwargs,
    ) -> dict[str, Any]:
        batch[TEAM_BATCH] = TeamBatch.from_fragments(episodes)
        return batch
