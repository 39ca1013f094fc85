"""RLlib multi-agent wrapper for PettingZoo parallel envs that exposes the global state.

HATRPO/HAPPO train decentralised actors on local observations but a centralised critic on
the environment's global state. The actors' observations therefore stay untouched, and the
global state travels alongside them in every agent's ``info`` dict under
:data:`GLOBAL_STATE_KEY`, from where the learner's connectors can pick it up.

RLlib ships ``ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv``, but it is not
reused here: it only sets old-API-stack ``Dict`` spaces, never casts observations, calls
``render(render_mode)`` (PettingZoo's ``render()`` takes no argument) and knows nothing of
``state()``, so a subclass would override every method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo.utils.env import ParallelEnv
from ray.rllib.env.multi_agent_env import MultiAgentEnv

GLOBAL_STATE_KEY = "state"
"""Key of the float32 global state in every agent's info dict."""

StateFn = Callable[[np.ndarray], np.ndarray]
"""Maps the raw ``state()`` vector to the state given to the learner (same shape)."""

ObsFn = Callable[[int, str, np.ndarray, np.ndarray], np.ndarray]
"""``obs_fn(agent_index, agent_id, local_obs, state) -> obs``; ``state`` is already mapped
by the state function and ``agent_index`` is the position in ``possible_agents``."""

MultiAgentDict = dict[str, Any]


def _float32_space(space: gym.Space) -> gym.Space:
    """Returns ``space`` with a float32 dtype when it is a Box (RLlib's torch models are f32)."""
    if isinstance(space, gym.spaces.Box) and space.dtype != np.float32:
        return gym.spaces.Box(
            low=space.low.astype(np.float32),
            high=space.high.astype(np.float32),
            shape=space.shape,
            dtype=np.float32,
        )
    return space


def _has_state(env: Any) -> bool:
    """True if ``env`` implements ``state()`` (PettingZoo's base class only raises)."""
    state = getattr(env, "state", None)
    return callable(state) and getattr(type(env), "state", None) is not ParallelEnv.state


class ParallelStateEnv(MultiAgentEnv):
    """Wraps a PettingZoo ``ParallelEnv`` with a ``state()`` method as an RLlib ``MultiAgentEnv``.

    * ``observation_spaces`` / ``action_spaces`` are dicts over ``possible_agents``; Box
      observation spaces are float32 and observations are cast accordingly.
    * ``state_space`` is a float32 Box; every agent's info carries the (mapped) global state
      as a float32 array under :data:`GLOBAL_STATE_KEY`.
    * ``terminateds`` / ``truncateds`` carry ``"__all__"``: the episode is over when every
      agent returned in the step is done or the wrapped env has no agents left. It counts as
      terminated only if all those agents terminated, otherwise as truncated.
    * Rewards are python floats.

    Args:
        env: The PettingZoo parallel env instance to wrap.
        state_fn: Optional map of the raw global state (must keep its shape), e.g. a
            standardisation. Applied before ``obs_fn`` and before writing the info.
        obs_fn: Optional replacement of each agent's observation, see :data:`ObsFn`.
        observation_spaces: The agents' observation spaces; required with ``obs_fn``,
            not allowed without it.

    Raises:
        ValueError: If ``env`` has no global state, or ``obs_fn`` and ``observation_spaces``
            are not given together.
    """

    def __init__(
        self,
        env: ParallelEnv,
        *,
        state_fn: StateFn | None = None,
        obs_fn: ObsFn | None = None,
        observation_spaces: dict[str, gym.Space] | None = None,
    ) -> None:
        name = getattr(env, "metadata", {}).get("name", type(env).__name__)
        no_state = (
            f"Environment {name!r} must implement state(): HATRPO's centralised critic "
            "requires a global state."
        )
        if not _has_state(env):
            raise ValueError(no_state)
        if (obs_fn is None) != (observation_spaces is None):
            raise ValueError("obs_fn and observation_spaces must be given together.")
        super().__init__()
        self.par_env = env
        self._state_fn = state_fn
        self._obs_fn = obs_fn
        self.possible_agents = list(env.possible_agents)
        self.agents = list(env.agents)
        self._agent_index = {aid: i for i, aid in enumerate(self.possible_agents)}
        self.action_spaces = {aid: env.action_space(aid) for aid in self.possible_agents}
        if observation_spaces is None:
            observation_spaces = {aid: env.observation_space(aid) for aid in self.possible_agents}
        self.observation_spaces = {aid: _float32_space(s) for aid, s in observation_spaces.items()}

        base_space = getattr(env, "state_space", None)
        if isinstance(base_space, gym.spaces.Box):
            state_shape = base_space.shape
        else:  # e.g. MaMuJoCo has state() but no state_space; its state() works before reset.
            try:
                state_shape = np.shape(env.state())
            except NotImplementedError as err:
                raise ValueError(no_state) from err
        self.state_space = gym.spaces.Box(-np.inf, np.inf, shape=state_shape, dtype=np.float32)
        self.render_mode = getattr(env, "render_mode", None)

    def _state(self) -> np.ndarray:
        """The current (mapped) global state as float32."""
        state = np.asarray(self.par_env.state(), dtype=np.float64)
        if self._state_fn is not None:
            state = self._state_fn(state)
        return np.asarray(state, dtype=np.float32)

    def _obs_and_infos(
        self, obs: MultiAgentDict, infos: MultiAgentDict | None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Casts/maps the observations and attaches the global state to each agent's info."""
        state = self._state()
        infos = infos or {}
        new_obs, new_infos = {}, {}
        for aid, o in obs.items():
            if self._obs_fn is not None:
                o = self._obs_fn(self._agent_index[aid], aid, np.asarray(o), state)
            space = self.observation_spaces[aid]
            if isinstance(space, gym.spaces.Box):
                o = np.asarray(o, dtype=np.float32)
            new_obs[aid] = o
            new_infos[aid] = {**infos.get(aid, {}), GLOBAL_STATE_KEY: state.copy()}
        return new_obs, new_infos

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Resets the wrapped env; returns ``(obs, infos)`` for the live agents."""
        super().reset(seed=seed, options=options)
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return self._obs_and_infos(obs, infos)

    def step(
        self, action_dict: MultiAgentDict
    ) -> tuple[MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict, MultiAgentDict]:
        """Steps the wrapped env; returns RLlib's ``(obs, rew, term, trunc, infos)`` dicts."""
        obs, rewards, terms, truncs, infos = self.par_env.step(action_dict)
        # PettingZoo empties `agents` when the episode ends; RLlib wants every agent that
        # returned an observation to be listed.
        self.agents = list(dict.fromkeys([*self.par_env.agents, *obs]))
        obs, infos = self._obs_and_infos(obs, infos)
        terminateds = {aid: bool(v) for aid, v in terms.items()}
        truncateds = {aid: bool(v) for aid, v in truncs.items()}
        stepped = set(terminateds) | set(truncateds)
        done = not self.par_env.agents or (
            bool(stepped)
            and all(terminateds.get(aid, False) or truncateds.get(aid, False) for aid in stepped)
        )
        all_terminated = done and all(terminateds.get(aid, False) for aid in stepped)
        terminateds["__all__"] = all_terminated
        truncateds["__all__"] = done and not all_terminated
        return obs, {aid: float(r) for aid, r in rewards.items()}, terminateds, truncateds, infos

    def render(self) -> Any:
        """Passes through to the wrapped env's ``render()``."""
        return self.par_env.render()

    def close(self) -> None:
        """Closes the wrapped env."""
        self.par_env.close()
