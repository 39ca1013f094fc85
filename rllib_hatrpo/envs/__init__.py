"""Environment layer: PettingZoo parallel envs with a global state, as RLlib multi-agent envs."""

from rllib_hatrpo.envs.mamujoco import (
    make_mamujoco_env,
    single_joint_factorization,
    validate_mamujoco_config,
)
from rllib_hatrpo.envs.parallel_state_env import GLOBAL_STATE_KEY, ParallelStateEnv

__all__ = [
    "GLOBAL_STATE_KEY",
    "ParallelStateEnv",
    "make_mamujoco_env",
    "single_joint_factorization",
    "validate_mamujoco_config",
]
