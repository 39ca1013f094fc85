"""Any PettingZoo ``ParallelEnv`` as a :class:`ParallelStateEnv`, with or without ``state()``.

Example (an RLlib env creator)::

    from ray.tune.registry import register_env
    from pettingzoo.butterfly import pistonball_v6  # any ParallelEnv factory

    register_env(
        "my_env", lambda cfg: make_pettingzoo_env(pistonball_v6.parallel_env, **cfg)
    )
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pettingzoo.utils.env import AECEnv, ParallelEnv

from rllib_hatrpo.envs.parallel_state_env import (
    GLOBAL_STATE_MODES,
    ParallelStateEnv,
    check_parallel_env,
    global_state_shape,
)

logger = logging.getLogger(__name__)

PETTINGZOO_GLOBAL_STATES: tuple[str, ...] = ("auto", *GLOBAL_STATE_MODES)
"""Allowed ``global_state`` values of :func:`make_pettingzoo_env`."""


def make_pettingzoo_env(
    env: ParallelEnv | Callable[..., ParallelEnv],
    global_state: str = "auto",
    **kwargs: Any,
) -> ParallelStateEnv:
    """Wraps a PettingZoo parallel env for HATRPO/HAPPO.

    Args:
        env: A ``ParallelEnv`` instance, or a callable returning one (e.g. a module's
            ``parallel_env``), called with ``kwargs``.
        global_state: The critic's global state: ``"state"`` = the env's ``state()`` (error
            if it has none); ``"concat_obs"`` = the concatenation of all possible agents'
            flattened float32 observations in ``possible_agents`` order (see
            :class:`ParallelStateEnv`); ``"auto"`` = ``"state"`` if the env implements
            ``state()``, else ``"concat_obs"`` with a logged warning.
        **kwargs: Arguments of the callable ``env``; not allowed with an instance.

    Raises:
        ValueError: If ``global_state`` is invalid, ``env`` is (or the callable returns) no
            ``ParallelEnv`` (e.g. an ``AECEnv``), an agent's observation or action space is not
            a Box or Discrete, or ``global_state="state"`` and the env has no ``state()``.
    """
    if global_state not in PETTINGZOO_GLOBAL_STATES:
        raise ValueError(
            f"global_state={global_state!r} is invalid; allowed: {list(PETTINGZOO_GLOBAL_STATES)}."
        )
    if isinstance(env, (ParallelEnv, AECEnv)):
        if kwargs:
            raise ValueError(
                f"kwargs {sorted(kwargs)} are only allowed when env is a callable creating the "
                "env, not with an env instance."
            )
    elif callable(env):
        env = env(**kwargs)
    check_parallel_env(env)
    if global_state == "auto":
        global_state = "state" if global_state_shape(env) is not None else "concat_obs"
        if global_state == "concat_obs":
            name = (getattr(env, "metadata", None) or {}).get("name", type(env).__name__)
            logger.warning(
                "Environment %r has no state(); the critic's global state is the "
                "concatenation of all agents' observations (global_state='concat_obs').",
                name,
            )
    return ParallelStateEnv(env, global_state=global_state)
