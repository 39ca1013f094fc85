"""`TeamEnvRunner`'s metrics under `MultiAgentEnvRunner`'s keys and reductions: steps sampled
per env, agent and module, and each finished episode's return, length and duration."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from ray.rllib.utils.metrics import (
    EPISODE_AGENT_RETURN_MEAN,
    EPISODE_AGENT_STEPS,
    EPISODE_DURATION_SEC_MEAN,
    EPISODE_LEN_MAX,
    EPISODE_LEN_MEAN,
    EPISODE_LEN_MIN,
    EPISODE_MODULE_RETURN_MEAN,
    EPISODE_RETURN_MAX,
    EPISODE_RETURN_MEAN,
    EPISODE_RETURN_MIN,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
)
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger


def log_sampled_steps(
    metrics: MetricsLogger, env_steps: int, agents_of_module: dict[str, list[str]]
) -> None:
    """Counts `env_steps` env steps, every agent acting at each."""
    metrics.log_value(NUM_ENV_STEPS_SAMPLED, env_steps, reduce="sum")
    metrics.log_value(
        NUM_ENV_STEPS_SAMPLED_LIFETIME, env_steps, reduce="lifetime_sum", with_throughput=True
    )
    for module_id, agents in agents_of_module.items():
        for agent in agents:
            metrics.log_value((NUM_AGENT_STEPS_SAMPLED, agent), env_steps, reduce="sum")
            metrics.log_value(
                (NUM_AGENT_STEPS_SAMPLED_LIFETIME, agent), env_steps, reduce="lifetime_sum"
            )
        module_steps = env_steps * len(agents)
        metrics.log_value((NUM_MODULE_STEPS_SAMPLED, module_id), module_steps, reduce="sum")
        metrics.log_value(
            (NUM_MODULE_STEPS_SAMPLED_LIFETIME, module_id), module_steps, reduce="lifetime_sum"
        )


class EpisodeTracker:
    """The running episode of each env copy: per-agent returns, length and start time."""

    def __init__(
        self, agents: Sequence[str], agents_of_module: dict[str, list[str]], window: int
    ) -> None:
        self.agents = list(agents)
        self.agents_of_module = agents_of_module
        self.window = window
        """Episodes the episode metrics are averaged over (RLlib's smoothing window)."""
        self.returns = np.zeros((0, len(self.agents)))
        self.lengths = np.zeros(0, dtype=np.int64)
        self.starts = np.zeros(0)

    def restart(self, num_envs: int) -> None:
        """Each of `num_envs` copies starts a new episode now."""
        self.returns = np.zeros((num_envs, len(self.agents)))
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.starts = np.full(num_envs, time.perf_counter())

    def add(self, rewards: np.ndarray) -> None:
        """One step of every copy with its agents' rewards (copies × agents)."""
        self.returns += rewards
        self.lengths += 1

    def log_end(self, i: int, metrics: MetricsLogger) -> None:
        """Logs copy i's finished episode and starts its next one."""
        agent_returns = dict(zip(self.agents, self.returns[i].tolist(), strict=True))
        length = int(self.lengths[i])
        module_returns = {
            module_id: sum(agent_returns[a] for a in agents)
            for module_id, agents in self.agents_of_module.items()
        }
        episode_return = sum(agent_returns.values())
        now = time.perf_counter()
        metrics.log_dict(
            {
                EPISODE_LEN_MEAN: length,
                EPISODE_RETURN_MEAN: episode_return,
                EPISODE_DURATION_SEC_MEAN: now - self.starts[i],
                EPISODE_AGENT_RETURN_MEAN: agent_returns,
                EPISODE_AGENT_STEPS: dict.fromkeys(self.agents, length),
                EPISODE_MODULE_RETURN_MEAN: module_returns,
            },
            window=self.window,
        )
        metrics.log_dict(
            {EPISODE_LEN_MIN: length, EPISODE_RETURN_MIN: episode_return},
            reduce="min",
            window=self.window,
        )
        metrics.log_dict(
            {EPISODE_LEN_MAX: length, EPISODE_RETURN_MAX: episode_return},
            reduce="max",
            window=self.window,
        )
        metrics.log_value(NUM_EPISODES, 1, reduce="sum")
        metrics.log_value(NUM_EPISODES_LIFETIME, 1, reduce="lifetime_sum")
        self.returns[i] = 0.0
        self.lengths[i] = 0
        self.starts[i] = now
