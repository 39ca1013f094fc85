"""rllib-hatrpo: heterogeneous-agent trust-region RL as Ray RLlib algorithms.

Importing the package registers the env names ("mamujoco", the MPE tasks, the single-agent
wrapper) with Tune, and the algorithm names "HATRPO", "HAPPO", "HAA2C" and "TRPO" with Tune and
RLlib (see :mod:`rllib_hatrpo.registry`), and keeps the module paths of version 0.1.0 that
its checkpoints name importable (:mod:`rllib_hatrpo.legacy_paths`).

The layers, top to bottom: `app` (the `rllib-hatrpo` command, experiment files, training
loop, Tune, evaluation, wandb) uses `algorithms` (configs, the training iteration, learners),
which build on `updates` (the update's math in plain torch), `modules` (actors, shared
critic), `sampling` (the EnvRunner and its batches), `operations` (checkpoints, resource
checks) and `envs`.
"""

from rllib_hatrpo.algorithms.happo import HAA2C, HAPPO, HAA2CConfig, HAPPOConfig
from rllib_hatrpo.algorithms.hatrpo import HATRPO, HATRPOConfig
from rllib_hatrpo.algorithms.trpo import TRPO, TRPOConfig
from rllib_hatrpo.envs import register_envs
from rllib_hatrpo.legacy_paths import install_legacy_paths
from rllib_hatrpo.registry import register_algorithms

register_envs()
register_algorithms()
install_legacy_paths()

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
