"""Module paths of version 0.1.0, whose package was flat, kept importable for its checkpoints.

A checkpoint pickles classes and functions by module path (the config's class, the RLModule
and learner classes, the EnvRunner class, the policy-mapping function, ...). `import
rllib_hatrpo` makes each old path below name the module that holds those objects now, so
checkpoints written before the move restore (tests/operations/test_checkpoints.py).
"""

from __future__ import annotations

import importlib
import sys

MOVED_MODULES: dict[str, str] = {
    "rllib_hatrpo.actor": "rllib_hatrpo.modules.actor",
    "rllib_hatrpo.config": "rllib_hatrpo.algorithms.config",
    "rllib_hatrpo.env_probe": "rllib_hatrpo.sampling.env_probe",
    "rllib_hatrpo.happo": "rllib_hatrpo.algorithms.happo",
    "rllib_hatrpo.happo_learner": "rllib_hatrpo.algorithms.first_order_learner",
    "rllib_hatrpo.hatrpo": "rllib_hatrpo.algorithms.hatrpo",
    "rllib_hatrpo.hatrpo_learner": "rllib_hatrpo.algorithms.hatrpo_learner",
    "rllib_hatrpo.shared_critic": "rllib_hatrpo.modules.shared_critic",
    "rllib_hatrpo.team_env_runner": "rllib_hatrpo.sampling.team_env_runner",
    "rllib_hatrpo.trpo": "rllib_hatrpo.algorithms.trpo",
}
"""The 0.1.0 modules that its checkpoints name, and where their contents live now."""


def install_legacy_paths() -> None:
    """Makes every old path of :data:`MOVED_MODULES` import its new module."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
