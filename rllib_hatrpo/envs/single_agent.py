"""A single-agent Gymnasium env as a one-agent team (TRPO is HATRPO with one agent).

The Gymnasium env is seen as a PettingZoo ``ParallelEnv`` with the one agent ``"agent_0"``
and wrapped in :class:`ParallelStateEnv` with ``global_state="concat_obs"``, so it gets the
same space checks, observation casting and done handling as every team env:

* observation: a Box is flattened to a 1-D float32 Box, a Discrete one-hot encoded as a
  float32 Box; other observation spaces are rejected;
* action space: the env's, which must be a Box or a Discrete (starting at 0);
* global state: the (converted) observation itself, so ``state_space`` equals the agent's
  observation space and the critic is V(observation);
* ``terminated`` / ``truncated`` become RLlib dicts with ``"__all__"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from pettingzoo.utils.env import ParallelEnv
from ray.rllib.utils.annotations import override

from rllib_hatrpo.envs.parallel_state_env import ParallelStateEnv, check_agent_space

SINGLE_AGENT_ENV = "single_agent_team"
"""The registered name of :func:`make_single_agent_env`."""

AGENT_ID = "agent_0"
"""The id of the one agent."""


class _GymAsParallelEnv(ParallelEnv):
    """A Gymnasium env as a one-agent PettingZoo ``ParallelEnv``."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self.possible_agents = [AGENT_ID]
        self.agents: list[str] = []
        spec = getattr(env, "spec", None)
        self.metadata = {
            **getattr(env, "metadata", {}),
            "name": spec.id if spec is not None else type(env.unwrapped).__name__,
        }
        self.render_mode = getattr(env, "render_mode", None)

    @override(ParallelEnv)
    def observation_space(self, agent: str) -> gym.Space:
        return self.env.observation_space

    @override(ParallelEnv)
    def action_space(self, agent: str) -> gym.Space:
        return self.env.action_space

    @override(ParallelEnv)
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.agents = [AGENT_ID]
        return {AGENT_ID: obs}, {AGENT_ID: info}

    @override(ParallelEnv)
    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions[AGENT_ID])
        if terminated or truncated:
            self.agents = []
        return (
            {AGENT_ID: obs},
            {AGENT_ID: reward},
            {AGENT_ID: terminated},
            {AGENT_ID: truncated},
            {AGENT_ID: info},
        )

    @override(ParallelEnv)
    def render(self) -> Any:
        return self.env.render()

    @override(ParallelEnv)
    def close(self) -> None:
        self.env.close()


def make_single_agent_env(env_config: Mapping[str, Any]) -> ParallelStateEnv:
    """Builds a Gymnasium env as a one-agent team; usable as an RLlib env creator.

    Args:
        env_config: ``{"env": <Gymnasium id, e.g. "Pendulum-v1", or a gymnasium.Env
            subclass>, **kwargs}``; the kwargs (e.g. ``render_mode``) go to
            ``gymnasium.make`` or the class.

    Returns:
        A :class:`ParallelStateEnv` (an RLlib ``MultiAgentEnv``) with the agent ``"agent_0"``,
        see the module docstring.

    Raises:
        ValueError: If ``env_config['env']`` is missing, is neither a string nor a
            ``gymnasium.Env`` subclass, names no registered Gymnasium env, or the env's
            spaces are not supported.
    """
    kwargs = dict(env_config or {})
    if "env" not in kwargs:
        raise ValueError(
            "env_config['env'] is missing; set it to a Gymnasium env id (e.g. 'Pendulum-v1') "
            "or a gymnasium.Env subclass."
        )
    env_spec = kwargs.pop("env")
    if isinstance(env_spec, str):
        try:
            env = gym.make(env_spec, **kwargs)
        except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as err:
            raise ValueError(
                f"env_config['env']={env_spec!r} is not a registered Gymnasium env: {err}"
            ) from err
    elif isinstance(env_spec, type) and issubclass(env_spec, gym.Env):
        env = env_spec(**kwargs)
    else:
        raise ValueError(
            f"env_config['env']={env_spec!r} is invalid; allowed: a Gymnasium env id (str) or "
            "a gymnasium.Env subclass."
        )
    try:
        check_agent_space(AGENT_ID, "observation", env.observation_space)
        check_agent_space(AGENT_ID, "action", env.action_space)
    except ValueError as err:
        env.close()
        raise ValueError(f"env_config['env']={env_spec!r}: {err}") from err
    return ParallelStateEnv(_GymAsParallelEnv(env), global_state="concat_obs")
