"""Learner connector: the EnvRunners' team fragments → one row-aligned team batch.

RLlib's default learner pipeline batches each module separately; the sequential update needs
all agents' rows aligned on the same env steps (row r of every agent is the same env and time
step), the global state of every observation, and one team reward per step. `TeamEnvRunner`
samples exactly that per fragment (`TeamFragment`); this piece concatenates the fragments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tree
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns

from rllib_hatrpo.sampling.team_fragment import TeamFragment

TEAM_BATCH = "team_batch"


class TeamBatchBuilder(ConnectorV2):
    """Writes `batch[TEAM_BATCH]`: per-agent obs/actions, states, team rewards, fragment ends.

    Layout (N env steps in K non-empty fragments):
      `agents[agent_id][obs|actions]`: N rows, fragment by fragment, time-ordered;
      `state`: N + K rows (each fragment's T observations plus the one after its last step);
      `rewards`: N rows, the mean of the agents' rewards (their shared team reward);
      `fragment_lengths`, `terminated`: K entries.
    """

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list[TeamFragment],
        **kwargs,
    ) -> dict[str, Any]:
        fragments = [f for f in episodes if len(f)]
        if not fragments:
            raise ValueError("TeamBatchBuilder received no env steps.")
        batch[TEAM_BATCH] = {
            "agents": {
                agent: {
                    Columns.OBS: concat_rows([f.obs[agent] for f in fragments]),
                    Columns.ACTIONS: np.concatenate([f.actions[agent] for f in fragments]),
                }
                for agent in fragments[0].actions
            },
            "state": np.concatenate([f.states for f in fragments]),
            "rewards": np.concatenate([f.rewards for f in fragments]),
            "fragment_lengths": [len(f) for f in fragments],
            "terminated": [f.terminated for f in fragments],
        }
        return batch


def concat_rows(parts: list[Any]) -> Any:
    """Concatenates row blocks that are arrays or (nested) dicts of arrays."""
    return tree.map_structure(lambda *blocks: np.concatenate(blocks), *parts)
