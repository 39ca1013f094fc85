"""The heterogeneous-agent sequential update (Kuba et al. 2022, Algorithm 1 and 2).

Agents are updated one after another in the given order. Agent i_m's step sees the factor
M = Π_{j<m} π_new^{i_j}(a|s) / π_old^{i_j}(a|s) of the agents already updated, evaluated row by
row on the same env steps; M is a constant (no gradient). What an agent's step does (trust
region, PPO clip, plain gradient) is passed in, so every algorithm shares this one loop.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

StepResult = TypeVar("StepResult")


def sequential_update(
    order: Sequence[Hashable],
    num_rows: int,
    agent_step: Callable[[Hashable, torch.Tensor], StepResult],
    log_ratio: Callable[[Hashable], torch.Tensor],
) -> tuple[dict[Hashable, StepResult], dict[Hashable, torch.Tensor]]:
    """Runs `agent_step(agent, M)` for each agent in `order`, updating M in between.

    `log_ratio(agent)` must return, for each of the `num_rows` rows, log π_new(a|s) − log π_old(a|s)
    of that agent's own action under its parameters after its step.

    Returns the step results and the factor M each agent was given, both keyed by agent.
    """
    factor = torch.ones(num_rows, dtype=torch.float64)
    results: dict[Hashable, StepResult] = {}
    factors: dict[Hashable, torch.Tensor] = {}
    for agent in order:
        factors[agent] = factor
        results[agent] = agent_step(agent, factor)
        with torch.no_grad():
            ratio = torch.exp(log_ratio(agent).double()).reshape(num_rows)
        # M ← M · π_new/π_old of the agent just updated (Kuba et al. 2022, eq. 11)
        factor = factor * ratio
    return results, factors


class AgentOrder:
    """Draws each iteration's update order: a fresh random permutation from a seeded generator,
    or always the given order with `fixed=True`. Its state is part of every checkpoint."""

    def __init__(self, agents: Sequence[Hashable], seed: int | None, fixed: bool = False):
        self.agents = list(agents)
        self.fixed = fixed
        self._rng = np.random.default_rng(seed)

    def next(self) -> list[Hashable]:
        """The order for the next iteration."""
        if self.fixed:
            return list(self.agents)
        return [self.agents[i] for i in self._rng.permutation(len(self.agents))]

    def get_state(self) -> dict[str, Any]:
        return {
            "agents": list(self.agents),
            "fixed": self.fixed,
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.agents = list(state["agents"])
        self.fixed = state["fixed"]
        self._rng.bit_generator.state = state["rng"]
