"""Algorithm names ("HATRPO", "HAPPO", "HAA2C", "TRPO") that Tune and RLlib resolve.

`import rllib_hatrpo` calls :func:`register_algorithms`, so after it every place that turns a
name into a class finds ours: `tune.Tuner("HATRPO", ...)` and
`ray.tune.registry.get_trainable_cls("HATRPO")` (Tune's registry), and RLlib's own
`ray.rllib.algorithms.registry` (`ALGORITHMS`, which `ray.rllib._register_all` re-registers
with Tune, and `ALGORITHMS_CLASS_TO_NAME`). A Tune trial actor unpickles our algorithm class,
which imports this package, so the names resolve there too.
"""

from __future__ import annotations

import functools

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

from rllib_hatrpo.algorithms.happo import HAA2C, HAPPO
from rllib_hatrpo.algorithms.hatrpo import HATRPO
from rllib_hatrpo.algorithms.trpo import TRPO

ALGORITHMS: dict[str, type[Algorithm]] = {cls.__name__: cls for cls in (HATRPO, HAPPO, HAA2C, TRPO)}
"""Our algorithms by the name every registry knows them under."""


def _class_and_default_config(cls: type[Algorithm]) -> tuple[type[Algorithm], AlgorithmConfig]:
    """The (class, default config) pair that RLlib's `ALGORITHMS` entries return."""
    return cls, cls.get_default_config()


def register_algorithms() -> None:
    """Registers every name of :data:`ALGORITHMS` with Tune and with RLlib's registry."""
    from ray.rllib.algorithms import registry as rllib_registry
    from ray.tune.registry import register_trainable

    for name, cls in ALGORITHMS.items():
        register_trainable(name, cls)
        rllib_registry.ALGORITHMS[name] = functools.partial(_class_and_default_config, cls)
        rllib_registry.ALGORITHMS_CLASS_TO_NAME[name] = name


def algorithm_class(name: str) -> type[Algorithm]:
    """Our algorithm class called `name`.

    Raises:
        ValueError: If `name` is not one of :data:`ALGORITHMS`, listing the allowed names.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm {name!r} is unknown; allowed: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
