"""Learner connector: multi-agent episodes → one row-aligned team batch.

RLlib's default learner pipeline batches each module separately; the sequential update needs
all agents' rows aligned on the same env steps (row r of every agent is the same env and time
step), the global state of every observation, and one team reward per step. This piece builds
exactly that from the episodes, reading the global state from the agents' infos.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tree
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

from rllib_hatrpo.envs import GLOBAL_STATE_KEY

TEAM_BATCH = "team_batch"


class TeamBatchBuilder(ConnectorV2):
    """Writes `batch[TEAM_BATCH]`: per-agent obs/actions, states, team rewards, fragment ends.

    Layout (N env steps in K fragments):
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
        episodes: list[MultiAgentEpisode],
        **kwargs,
    ) -> dict[str, Any]:
        agent_ids = self._agent_ids(episodes)
        per_agent: dict[str, dict[str, list]] = {a: {"obs": [], "actions": []} for a in agent_ids}
        states, rewards, lengths, terminated = [], [], [], []
        for episode in episodes:
            fragments = {a: episode.agent_episodes[a] for a in agent_ids}
            length = len(fragments[agent_ids[0]])
            if any(len(f) != length for f in fragments.values()):
                raise ValueError(
                    "Every agent must act at every env step (row alignment); episode "
                    f"{episode.id_} has per-agent lengths "
                    f"{ {a: len(f) for a, f in fragments.items()} }."
                )
            if length == 0:
                continue
            first = fragments[agent_ids[0]]
            infos = first.get_infos()
            states.append(np.stack([np.asarray(i[GLOBAL_STATE_KEY]) for i in infos]))
            rewards.append(np.mean([f.get_rewards() for f in fragments.values()], axis=0))
            for a, f in fragments.items():
                # observations may be nested (an action mask beside the observation)
                obs = tree.map_structure(lambda x: np.asarray(x)[:-1], f.get_observations())
                per_agent[a]["obs"].append(obs)
                per_agent[a]["actions"].append(np.asarray(f.get_actions()))
            lengths.append(length)
            terminated.append(bool(episode.is_terminated))
        batch[TEAM_BATCH] = {
            "agents": {
                a: {
                    Columns.OBS: concat_rows(d["obs"]),
                    Columns.ACTIONS: np.concatenate(d["actions"]),
                }
                for a, d in per_agent.items()
            },
            "state": np.concatenate(states).astype(np.float32),
            "rewards": np.concatenate(rewards).astype(np.float64),
            "fragment_lengths": lengths,
            "terminated": terminated,
        }
        return batch

    @staticmethod
    def _agent_ids(episodes: list[MultiAgentEpisode]) -> list[str]:
        ids = sorted({a for e in episodes for a in e.agent_episodes})
        if not ids:
            raise ValueError("TeamBatchBuilder received episodes without any agent data.")
        return ids


def concat_rows(parts: list[Any]) -> Any:
    """Concatenates row blocks that are arrays or (nested) dicts of arrays."""
    return tree.map_structure(lambda *blocks: np.concatenate(blocks), *parts)
