"""rllib-hatrpo: heterogeneous-agent trust-region RL as Ray RLlib algorithms.

Importing the package registers the env names ("mamujoco", the MPE tasks, the single-agent
wrapper) with Tune, and the algorithm names "HATRPO", "HAPPO", "HAA2C" and "TRPO" with Tune and
RLlib (see :mod:`rllib_hatrpo.registry`).
"""

from rllib_hatrpo.envs import register_envs
from rllib_hatrpo.happo import HAA2C, HAPPO, HAA2CConfig, HAPPOConfig
from rllib_hatrpo.hatrpo import HATRPO, HATRPOConfig
from rllib_hatrpo.registry import register_algorithms
from rllib_hatrpo.trpo import TRPO, TRPOConfig

register_envs()
register_algorithms()

__all__ = [
    "HAA2C",
    "HAA2CConfig",
    "HAPPO",
    "HAPPOConfig",
    "HATRPO",
    "HATRPOConfig",
    "TRPO",
    "TRPOConfig",
]
