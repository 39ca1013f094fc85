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
from pettingzoo.utils.env import AECEnv, ParallelEnv
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.annotations import override

GLOBAL_STATE_KEY = "state"
"""Key of the float32 global state in every agent's info dict."""

StateFn = Callable[[np.ndarray], np.ndarray]
"""Maps the raw ``state()`` vector to the state given to the learner (same shape)."""

ObsFn = Callable[[int, str, np.ndarray, np.ndarray], np.ndarray]
"""``obs_fn(agent_index, agent_id, local_obs, raw_state) -> obs``; ``raw_state`` is the float64
global state before the state function maps it (the same array for every agent of one step),
and ``agent_index`` is the position in ``possible_agents``."""

MultiAgentDict = dict[str, Any]


GLOBAL_STATE_MODES: tuple[str, ...] = ("state", "concat_obs")
"""Sources of the global state: the env's ``state()``, or the concatenated observations."""

SUPPORTED_SPACES: tuple[type[gym.Space], ...] = (gym.spaces.Box, gym.spaces.Discrete)
"""The observation and action space types an agent may have."""


def check_parallel_env(env: Any) -> None:
    """Raises ValueError unless ``env`` is a PettingZoo ``ParallelEnv`` instance."""
    if isinstance(env, ParallelEnv):
        return
    kind = "AECEnv" if isinstance(env, AECEnv) else type(env).__name__
    raise ValueError(
        f"{env!r} is not a PettingZoo ParallelEnv (got {kind} {type(env)}); use "
        "pettingzoo.utils.aec_to_parallel or the env's parallel_env()."
    )


def check_agent_space(agent: str, kind: str, space: Any) -> None:
    """Raises ValueError unless ``space`` is a Box or (for actions, zero-based) Discrete.

    Args:
        agent: The agent id, named in the message.
        kind: ``"observation"`` or ``"action"``.
        space: The agent's space.
    """
    if isinstance(space, gym.spaces.Discrete) and kind == "action" and space.start != 0:
        raise ValueError(
            f"agent {agent!r}: action space {space} is not supported; Discrete action "
            "spaces must start at 0."
        )
    if kind == "observation" and is_masked_space(space):
        return
    if not isinstance(space, SUPPORTED_SPACES):
        masked = " or (observations) Dict(observation=Box|Discrete, action_mask=Box|MultiBinary)"
        raise ValueError(
            f"agent {agent!r}: {kind} space {space} is not supported; allowed: "
            f"{', '.join(t.__name__ for t in SUPPORTED_SPACES)}"
            f"{masked if kind == 'observation' else ''}."
        )


def is_masked_space(space: Any) -> bool:
    """True for an action-masked observation: Dict(observation=..., action_mask=...)."""
    return (
        isinstance(space, gym.spaces.Dict)
        and set(space.spaces) == {"observation", "action_mask"}
        and isinstance(space["observation"], SUPPORTED_SPACES)
        and isinstance(space["action_mask"], gym.spaces.Box | gym.spaces.MultiBinary)
    )


def check_action_mask(agent: str, obs_space: gym.Space, action_space: gym.Space) -> None:
    """A mask needs a Discrete action space with one entry per action."""
    if not is_masked_space(obs_space):
        return
    size = int(np.prod(obs_space["action_mask"].shape))
    if not isinstance(action_space, gym.spaces.Discrete) or size != action_space.n:
        raise ValueError(
            f"agent {agent!r}: action_mask of size {size} needs a Discrete action space with "
            f"{size} actions, got {action_space}."
        )


def observation_part(obs: Any) -> Any:
    """The observation itself, without an action mask."""
    return obs["observation"] if isinstance(obs, dict) else obs


def flat_obs_space(space: gym.Space) -> gym.spaces.Box | gym.spaces.Dict:
    """The 1-D float32 Box an observation of ``space`` becomes (see :func:`flat_obs`); a
    masked observation keeps its mask beside it, as a float32 Box of 0/1."""
    if is_masked_space(space):
        size = int(np.prod(space["action_mask"].shape))
        return gym.spaces.Dict(
            {
                "observation": flat_obs_space(space["observation"]),
                "action_mask": gym.spaces.Box(0.0, 1.0, (size,), np.float32),
            }
        )
    flat = gym.spaces.flatten_space(space)
    return gym.spaces.Box(
        low=flat.low.astype(np.float32),
        high=flat.high.astype(np.float32),
        shape=flat.shape,
        dtype=np.float32,
    )


def flat_obs(space: gym.Space, obs: Any) -> np.ndarray | dict[str, np.ndarray]:
    """``obs`` of ``space`` as a 1-D float32 array: a Box flattened, a Discrete one-hot; a
    masked observation as {"observation": that array, "action_mask": float32 0/1}."""
    if isinstance(space, gym.spaces.Box):  # gym.spaces.flatten's Box case, without its dispatch
        return np.asarray(obs, dtype=space.dtype).astype(np.float32).reshape(-1)
    if is_masked_space(space):
        return {
            "observation": flat_obs(space["observation"], obs["observation"]),
            "action_mask": np.asarray(obs["action_mask"], dtype=np.float32).reshape(-1),
        }
    return np.asarray(gym.spaces.flatten(space, obs), dtype=np.float32)


def _has_state(env: Any) -> bool:
    """True if ``env`` implements ``state()``; PettingZoo's base classes only raise, also
    behind wrappers (e.g. ``aec_to_parallel`` of an AEC env without ``state()``)."""
    if not callable(getattr(env, "state", None)):
        return False
    base_states = (ParallelEnv.state, AECEnv.state)
    inner = getattr(env, "unwrapped", env)
    return all(getattr(type(e), "state", None) not in base_states for e in (env, inner))


def env_name(env: Any) -> str:
    """The env's ``metadata["name"]``, else its type name (for messages)."""
    return (getattr(env, "metadata", None) or {}).get("name", type(env).__name__)


def global_state_shape(env: ParallelEnv) -> tuple[int, ...] | None:
    """The shape of ``env.state()``, or None if the env does not implement ``state()``.

    Without a Box ``state_space`` the shape is read from ``state()``, after ``env.reset()``:
    many envs build their state only in ``reset()``, so ``state()`` is never called before it.

    Raises:
        ValueError: If ``state()`` raises (NotImplementedError aside, which means "no
            state()"), naming the env and the exception.
    """
    if not _has_state(env):
        return None
    base_space = getattr(env, "state_space", None)
    if isinstance(base_space, gym.spaces.Box):
        return base_space.shape
    env.reset()
    try:
        return np.shape(env.state())
    except NotImplementedError:
        return None
    except Exception as err:
        raise ValueError(
            f"Environment {env_name(env)!r}: state() raised {type(err).__name__}: {err} "
            "(called after reset() to find the global state's shape)."
        ) from err


class ParallelStateEnv(MultiAgentEnv):
    """Wraps a PettingZoo ``ParallelEnv`` as an RLlib ``MultiAgentEnv`` with a global state.

    * ``observation_spaces`` / ``action_spaces`` are dicts over ``possible_agents``. Every
      agent's observation and action space must be a Box or a Discrete (Discrete actions
      starting at 0), or, for agents with Discrete actions, an action-masked observation
      Dict(observation=Box|Discrete, action_mask=Box|MultiBinary of size n); anything else
      (MultiDiscrete, other Dicts, ...) is rejected in the constructor, naming the agent and
      the space. Observations become 1-D float32 Boxes: a Box observation is flattened and
      cast, a Discrete one one-hot encoded; a mask passes through beside it as float32 0/1.
      Action spaces are passed through unchanged.
    * ``state_space`` is a float32 Box; every agent's info carries the (mapped) global state
      as a float32 array under :data:`GLOBAL_STATE_KEY`.
    * ``terminateds`` / ``truncateds`` carry ``"__all__"``: the episode is over when every
      agent returned in the step is done or the wrapped env has no agents left. It counts as
      terminated only if all those agents terminated, otherwise as truncated.
    * Rewards are python floats.

    Args:
        env: The PettingZoo parallel env instance to wrap.
        global_state: Where the global state comes from: ``"state"`` (default) = the env's
            ``state()``; ``"concat_obs"`` = the concatenation of every possible agent's
            flattened float32 observation (as above) in ``possible_agents`` order, with zeros
            for agents that returned no observation in the step (its ``state_space`` bounds
            are the concatenated observation bounds). Observations are the env's, before
            ``obs_fn``.
        state_fn: Optional map of the raw global state (must keep its shape), e.g. a
            standardisation, for the info; ``obs_fn`` gets the state before it.
        obs_fn: Optional replacement of each agent's observation, see :data:`ObsFn`.
        observation_spaces: The agents' observation spaces; required with ``obs_fn``,
            not allowed without it.

    Raises:
        ValueError: If ``env`` is not a ``ParallelEnv``, an agent's space is not supported,
            ``global_state="state"`` and ``env`` has no ``state()`` (or, without a Box
            ``state_space``, its ``state()`` raises after ``reset()``), or ``obs_fn`` and
            ``observation_spaces`` are not given together.
    """

    def __init__(
        self,
        env: ParallelEnv,
        *,
        global_state: str = "state",
        state_fn: StateFn | None = None,
        obs_fn: ObsFn | None = None,
        observation_spaces: dict[str, gym.Space] | None = None,
    ) -> None:
        check_parallel_env(env)
        if global_state not in GLOBAL_STATE_MODES:
            raise ValueError(
                f"global_state={global_state!r} is invalid; allowed: {list(GLOBAL_STATE_MODES)}."
            )
        if (obs_fn is None) != (observation_spaces is None):
            raise ValueError("obs_fn and observation_spaces must be given together.")
        possible_agents = list(env.possible_agents)
        env_obs_spaces = {aid: env.observation_space(aid) for aid in possible_agents}
        action_spaces = {aid: env.action_space(aid) for aid in possible_agents}
        for aid in possible_agents:
            check_agent_space(aid, "observation", env_obs_spaces[aid])
            check_agent_space(aid, "action", action_spaces[aid])
            check_action_mask(aid, env_obs_spaces[aid], action_spaces[aid])
        if observation_spaces is None:
            observation_spaces = env_obs_spaces
        else:
            for aid, space in observation_spaces.items():
                check_agent_space(aid, "observation", space)

        if global_state == "state":
            state_shape = global_state_shape(env)
            if state_shape is None:
                name = env_name(env)
                raise ValueError(
                    f"Environment {name!r} must implement state(): HATRPO's centralised critic "
                    "requires a global state (or use global_state='concat_obs')."
                )
            state_space = gym.spaces.Box(-np.inf, np.inf, shape=state_shape, dtype=np.float32)
        else:
            flat = [
                observation_part(flat_obs_space(env_obs_spaces[aid])) for aid in possible_agents
            ]
            state_space = gym.spaces.Box(
                low=np.concatenate([f.low for f in flat]),
                high=np.concatenate([f.high for f in flat]),
                dtype=np.float32,
            )

        super().__init__()
        self.par_env = env
        self._global_state = global_state
        self._state_fn = state_fn
        self._obs_fn = obs_fn
        self.possible_agents = possible_agents
        # PettingZoo's AEC-to-parallel wrappers have `agents` only after reset().
        self.agents = list(getattr(env, "agents", []))
        self._agent_index = {aid: i for i, aid in enumerate(self.possible_agents)}
        self._env_obs_spaces = env_obs_spaces
        self._given_obs_spaces = observation_spaces
        self.action_spaces = action_spaces
        self.observation_spaces = {aid: flat_obs_space(s) for aid, s in observation_spaces.items()}
        self.state_space = state_space
        self.render_mode = getattr(env, "render_mode", None)

    def _raw_state(self, flat_env_obs: MultiAgentDict) -> np.ndarray:
        """The current global state as float64, before the state function."""
        if self._global_state == "state":
            state = np.asarray(self.par_env.state(), dtype=np.float64)
        else:
            state = np.concatenate(
                [
                    observation_part(flat_env_obs[aid])
                    if aid in flat_env_obs
                    else np.zeros(
                        observation_part(flat_obs_space(self._env_obs_spaces[aid])).shape,
                        np.float32,
                    )
                    for aid in self.possible_agents
                ]
            ).astype(np.float64)
        return state

    def _mapped_state(self, raw_state: np.ndarray) -> np.ndarray:
        """The global state given to the learner: the state function's map, as float32."""
        state = raw_state if self._state_fn is None else self._state_fn(raw_state)
        return np.asarray(state, dtype=np.float32)

    def _obs_and_infos(
        self, obs: MultiAgentDict, infos: MultiAgentDict | None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Casts/maps the observations and attaches the global state to each agent's info."""
        # the env's own observations, flattened: the actors' (without obs_fn) or the state's
        needs_flat = self._obs_fn is None or self._global_state == "concat_obs"
        flat = (
            {aid: flat_obs(self._env_obs_spaces[aid], o) for aid, o in obs.items()}
            if needs_flat
            else {}
        )
        raw_state = self._raw_state(flat)
        state = self._mapped_state(raw_state)
        infos = infos or {}
        new_obs, new_infos = {}, {}
        for aid, o in obs.items():
            if self._obs_fn is not None:
                o = self._obs_fn(self._agent_index[aid], aid, np.asarray(o), raw_state)
                new_obs[aid] = flat_obs(self._given_obs_spaces[aid], o)
            else:
                new_obs[aid] = flat[aid]
            new_infos[aid] = {**infos.get(aid, {}), GLOBAL_STATE_KEY: state.copy()}
        return new_obs, new_infos

    @override(MultiAgentEnv)
    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[MultiAgentDict, MultiAgentDict]:
        """Resets the wrapped env; returns ``(obs, infos)`` for the live agents."""
        super().reset(seed=seed, options=options)
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return self._obs_and_infos(obs, infos)

    @override(MultiAgentEnv)
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

    @override(MultiAgentEnv)
    def render(self) -> Any:
        """Passes through to the wrapped env's ``render()``."""
        return self.par_env.render()

    @override(MultiAgentEnv)
    def close(self) -> None:
        """Closes the wrapped env."""
        self.par_env.close()
