"""rllib-hatrpo: heterogeneous-agent trust-region RL as Ray RLlib algorithms.

Importing the package registers the env names ("mamujoco", the MPE tasks, the single-agent
wrapper) and the trainables "HATRPO", "HAPPO", "HAA2C" and "TRPO" with Tune.
"""

from ray.tune.registry import register_trainable

from rllib_hatrpo.envs import register_envs
from rllib_hatrpo.happo import HAA2C, HAPPO, HAA2CConfig, HAPPOConfig
from rllib_hatrpo.hatrpo import HATRPO, HATRPOConfig
from rllib_hatrpo.trpo import TRPO, TRPOConfig

register_envs()
for _algo in (HATRPO, HAPPO, HAA2C, TRPO):
    register_trainable(_algo.__name__, _algo)

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
