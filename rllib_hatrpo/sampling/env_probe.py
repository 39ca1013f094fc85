"""Building a config's env as RLlib's EnvRunners do, and reading a team env's agents, spaces and
global-state space on the driver, before any actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from ray.rllib.env.env_context import EnvContext


@dataclass(frozen=True)
class TeamSpaces:
    """The spaces the modules are built from."""

    agents: tuple[str, ...]
    observation_spaces: dict[str, gym.Space]
    action_spaces: dict[str, gym.Space]
    state_space: gym.Space


def build_env(
    env_specifier: Any, env_config: dict | None, *, worker_index: int = 0, num_workers: int = 0
) -> Any:
    """One env built exactly as RLlib's EnvRunners build it: the creator RLlib resolves for
    `env_specifier` (a Tune-registered name, a Gymnasium id, an env class or its path),
    called with an `EnvContext` of `env_config`.

    Raises:
        ValueError: If `env_specifier` names no env, listing the names we register.
    """
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.utils.error import EnvError

    context = EnvContext(env_config or {}, worker_index=worker_index, num_workers=num_workers)
    try:
        _, creator = Algorithm._get_env_id_and_creator(env_specifier, _NoRemoteEnvs())
        return creator(context)
    except EnvError:
        from rllib_hatrpo.envs import registered_env_names

        raise ValueError(
            f"env={env_specifier!r} is unknown: it is neither a registered env (ours: "
            f"{', '.join(registered_env_names())}; or your own, registered with "
            "ray.tune.register_env) nor an env class path. A single-agent Gymnasium id takes "
            "TRPO."
        ) from None


def probe_env(env_specifier: Any, env_config: dict | None) -> TeamSpaces:
    """Builds one env as RLlib's EnvRunners would (`build_env`), reads its spaces, and closes it.

    Raises ValueError when the env name is unknown or the env exposes no global state
    (`state_space`).
    """
    env = build_env(env_specifier, env_config)
    try:
        env = getattr(env, "unwrapped", env)
        state_space = getattr(env, "state_space", None)
        if state_space is None:
            raise ValueError(
                f"env: {env_specifier!r} has no global state. The shared critic needs one: "
                "wrap a PettingZoo ParallelEnv with a state() method in "
                "rllib_hatrpo.envs.ParallelStateEnv, or use an env that sets `state_space` and "
                "puts the state into every agent's info under 'state'."
            )
        agents = tuple(env.possible_agents)
        return TeamSpaces(
            agents=agents,
            observation_spaces={a: env.get_observation_space(a) for a in agents},
            action_spaces={a: env.get_action_space(a) for a in agents},
            state_space=state_space,
        )
    finally:
        env.close()


class _NoRemoteEnvs(dict):
    """The one config key `_get_env_id_and_creator` reads: sub-environments are never Ray
    actors (`TeamEnvRunner` steps its copies in its own process)."""

    def __init__(self):
        super().__init__(remote_worker_envs=False)
