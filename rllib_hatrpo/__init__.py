"""rllib-hatrpo: heterogeneous-agent trust-region RL as Ray RLlib algorithms.

Importing the package registers the env name "mamujoco" and the trainable "HATRPO" with Tune.
"""

from ray.tune.registry import register_env, register_trainable

from rllib_hatrpo.envs import make_mamujoco_env
from rllib_hatrpo.hatrpo import HATRPO, HATRPOConfig

register_env("mamujoco", make_mamujoco_env)
register_trainable("HATRPO", HATRPO)

__all__ = ["HATRPO", "HATRPOConfig"]
