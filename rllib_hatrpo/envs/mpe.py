"""Multi-Agent Particle Environments (the ``mpe2`` package) as :class:`ParallelStateEnv`.

Two cooperative tasks are registered (see :data:`MPE_ENVS`):

* ``"simple_spread_v3"``: ``N`` homogeneous agents cover ``N`` landmarks; each agent's
  reward is ``local_ratio`` × its own collision penalty + (1 − ``local_ratio``) × the shared
  coverage reward (the learner's team reward is the mean over agents).
* ``"simple_speaker_listener_v4"``: heterogeneous agents: ``speaker_0`` (obs 3, Discrete(3)
  actions, or Box(0, 1, (3,)) with continuous actions) tells ``listener_0`` (obs 11,
  Discrete(5) / Box(0, 1, (5,))) which landmark to reach; both get the same reward.

Episodes last ``max_cycles`` steps and end by truncation. The global state is the env's own
``state()`` (all agents' observations concatenated); observations are float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rllib_hatrpo.envs.parallel_state_env import ParallelStateEnv

RENDER_MODES: tuple[str | None, ...] = (None, "rgb_array")

MPE_DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "simple_spread_v3": {
        "N": 3,
        "local_ratio": 0.5,
        "max_cycles": 25,
        "continuous_actions": False,
        "render_mode": None,
    },
    "simple_speaker_listener_v4": {
        "max_cycles": 25,
        "continuous_actions": False,
        "render_mode": None,
    },
}
"""All accepted ``env_config`` keys of each MPE task, with their defaults (``mpe2``'s)."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "N": (lambda x: _is_int(x) and x >= 1, "an int >= 1"),
    "local_ratio": (
        lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1,
        "a number in [0, 1]",
    ),
    "max_cycles": (lambda x: _is_int(x) and x >= 1, "an int >= 1"),
    "continuous_actions": (lambda x: isinstance(x, bool), "True or False"),
    "render_mode": (lambda x: x in RENDER_MODES, f"one of {list(RENDER_MODES)}"),
}
"""Per key: the value check and the description of the allowed values."""


def validate_mpe_config(name: str, env_config: Mapping[str, Any]) -> None:
    """Checks the name and ``env_config`` of an MPE task without building it.

    Raises:
        ValueError: Naming the offending field (or task name) and its allowed values.
    """
    if name not in MPE_DEFAULT_CONFIGS:
        raise ValueError(
            f"MPE task {name!r} is not supported; allowed: {list(MPE_DEFAULT_CONFIGS)}."
        )
    allowed = MPE_DEFAULT_CONFIGS[name]
    unknown = sorted(set(env_config) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown env_config keys {unknown} for {name!r}; allowed: {list(allowed)}."
        )
    for key, value in env_config.items():
        check, allowed_values = _CHECKS[key]
        if not check(value):
            raise ValueError(f"{key}={value!r} is invalid for {name!r}; allowed: {allowed_values}.")


def make_mpe_env(name: str, env_config: Mapping[str, Any] | None = None) -> ParallelStateEnv:
    """Builds the MPE task ``name`` (a key of :data:`MPE_DEFAULT_CONFIGS`).

    ``env_config`` keys (all optional, unknown keys are rejected):

    * ``"simple_spread_v3"``: ``N`` (3) agents and landmarks, ``local_ratio`` (0.5) weight
      of the agent's local reward, ``max_cycles`` (25) steps per episode,
      ``continuous_actions`` (False: Discrete(5); True: Box(0, 1, (5,))), ``render_mode``
      (None or "rgb_array").
    * ``"simple_speaker_listener_v4"``: ``max_cycles`` (25), ``continuous_actions`` (False),
      ``render_mode`` (None).
    """
    import importlib

    env_config = dict(env_config or {})
    validate_mpe_config(name, env_config)
    module = importlib.import_module(f"mpe2.{name}")
    env = module.parallel_env(**{**MPE_DEFAULT_CONFIGS[name], **env_config})
    return ParallelStateEnv(env)


def make_simple_spread_env(env_config: Mapping[str, Any] | None = None) -> ParallelStateEnv:
    """RLlib env creator of ``"simple_spread_v3"``, see :func:`make_mpe_env`."""
    return make_mpe_env("simple_spread_v3", env_config)


def make_simple_speaker_listener_env(
    env_config: Mapping[str, Any] | None = None,
) -> ParallelStateEnv:
    """RLlib env creator of ``"simple_speaker_listener_v4"``, see :func:`make_mpe_env`."""
    return make_mpe_env("simple_speaker_listener_v4", env_config)


MPE_ENVS: dict[str, Callable[[Mapping[str, Any] | None], ParallelStateEnv]] = {
    "simple_spread_v3": make_simple_spread_env,
    "simple_speaker_listener_v4": make_simple_speaker_listener_env,
}
"""The registered MPE env names and their RLlib env creators."""
