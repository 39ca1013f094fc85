"""Environment layer: PettingZoo parallel envs with a global state, as RLlib multi-agent envs."""

from rllib_hatrpo.envs.mamujoco import (
    make_mamujoco_env,
    single_joint_factorization,
    validate_mamujoco_config,
)
from rllib_hatrpo.envs.mpe import MPE_ENVS, make_mpe_env, validate_mpe_config
from rllib_hatrpo.envs.parallel_state_env import GLOBAL_STATE_KEY, ParallelStateEnv
from rllib_hatrpo.envs.pettingzoo_env import make_pettingzoo_env
from rllib_hatrpo.envs.single_agent import SINGLE_AGENT_ENV, make_single_agent_env


def registered_env_names() -> list[str]:
    """The env names :func:`register_envs` registers ("mamujoco", then the MPE tasks)."""
    return ["mamujoco", *MPE_ENVS]


def register_envs() -> None:
    """Registers "mamujoco", the MPE tasks of :data:`MPE_ENVS` and :data:`SINGLE_AGENT_ENV`
    with Tune, so they can be named in ``config.environment(...)``."""
    from ray.tune.registry import register_env

    register_env("mamujoco", make_mamujoco_env)
    for name, creator in MPE_ENVS.items():
        register_env(name, creator)
    register_env(SINGLE_AGENT_ENV, make_single_agent_env)


__all__ = [
    "GLOBAL_STATE_KEY",
    "MPE_ENVS",
    "SINGLE_AGENT_ENV",
    "ParallelStateEnv",
    "make_mamujoco_env",
    "make_mpe_env",
    "make_pettingzoo_env",
    "make_single_agent_env",
    "register_envs",
    "registered_env_names",
    "single_joint_factorization",
    "validate_mamujoco_config",
    "validate_mpe_config",
]
