"""Multi-Agent MuJoCo (``gymnasium_robotics.mamujoco_v1``) as a :class:`ParallelStateEnv`.

Episodes last 1000 steps and end by truncation (or earlier by termination for the scenarios
with a "healthy" condition). The library's observations are float64; the wrapper casts them
to float32. Actions are float32 Boxes, one per agent.

The configuration is validated before any env is built, so a typo fails fast with a message
naming the field and its allowed values instead of deep inside MuJoCo.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rllib_hatrpo.envs.parallel_state_env import ParallelStateEnv

VALID_AGENT_CONFS: dict[str, tuple[str | None, ...]] = {
    "Ant": (None, "2x4", "2x4d", "4x2"),
    "HalfCheetah": (None, "2x3", "6x1"),
    "Hopper": (None, "3x1"),
    "Humanoid": (None, "9|8"),
    "HumanoidStandup": (None, "9|8"),
    "Reacher": (None, "2x1"),
    "Pusher": (None, "3p"),
    "Swimmer": (None, "2x1"),
    "Walker2d": (None, "2x3"),
    "InvertedPendulum": (None,),
    "InvertedDoublePendulum": (None,),
}
"""Valid ``agent_conf`` per scenario, hard-coded from the ``if partitioning == ...`` chains of
``gymnasium_robotics.envs.multiagent_mujoco.obsk.get_parts_and_edges`` (gymnasium-robotics
1.4; the library has no data structure for it). ``None`` is the single-agent task (one agent
observing the full state). Checked against the library by ``tests/envs/test_envs.py``.
The library's ``CoupledHalfCheetah`` (``"1p1"``) is left out: it crashes with mujoco>=4, whose
``data.ten_J`` is sparse (shape ``(nnz,)``), not the dense ``(ntendon, nv)`` it indexes."""

SEGMENT_SCENARIOS: tuple[str, ...] = ("ManySegmentSwimmer", "ManySegmentAnt")
"""Scenarios whose ``agent_conf`` is free-form ``"<agents>x<segments per agent>"``."""

SCENARIOS: tuple[str, ...] = (*VALID_AGENT_CONFS, *SEGMENT_SCENARIOS)
OBS_MODES: tuple[str, ...] = ("local", "global")
RENDER_MODES: tuple[str | None, ...] = (None, "rgb_array")
FACTORIZATION_KEYS: tuple[str, ...] = ("partition", "edges", "globals")

DEFAULT_CONFIG: dict[str, Any] = {
    "scenario": "HalfCheetah",
    "agent_conf": "2x3",
    "agent_obsk": 1,
    "agent_factorization": None,
    "obs_mode": "local",
    "render_mode": None,
    "batched": True,
    "xml_file": None,
}
"""All accepted ``env_config`` keys with their defaults."""

_SEGMENT_CONF = re.compile(r"[1-9]\d*x[1-9]\d*")


def validate_mamujoco_config(env_config: Mapping[str, Any]) -> None:
    """Checks a MaMuJoCo ``env_config`` (see :func:`make_mamujoco_env`) without building it.

    Raises:
        ValueError: Naming the offending field and its allowed values.
    """
    unknown = sorted(set(env_config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"Unknown env_config keys {unknown}; allowed: {list(DEFAULT_CONFIG)}.")
    cfg = {**DEFAULT_CONFIG, **env_config}
    scenario, conf, obsk, fact = (
        cfg["scenario"],
        cfg["agent_conf"],
        cfg["agent_obsk"],
        cfg["agent_factorization"],
    )
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not supported; allowed: {list(SCENARIOS)}.")
    if scenario in SEGMENT_SCENARIOS:
        if not (isinstance(conf, str) and _SEGMENT_CONF.fullmatch(conf)):
            raise ValueError(
                f"agent_conf={conf!r} is invalid for scenario {scenario!r}; allowed: "
                "'<agents>x<segments per agent>' with positive integers, e.g. '2x3'."
            )
    elif fact is not None:
        if not isinstance(conf, str):
            raise ValueError(
                f"agent_conf={conf!r} is invalid with agent_factorization: it must be a string "
                "(a free-form name; with None the library ignores the factorization)."
            )
    elif conf not in VALID_AGENT_CONFS[scenario]:
        raise ValueError(
            f"agent_conf={conf!r} is invalid for scenario {scenario!r}; allowed: "
            f"{list(VALID_AGENT_CONFS[scenario])} (or any string with agent_factorization)."
        )
    if obsk is None:
        if conf is not None:
            raise ValueError(
                "agent_obsk=None makes the library collapse the task into one fully observing "
                "agent; allowed: a non-negative int, or None only with agent_conf=None."
            )
    elif isinstance(obsk, bool) or not isinstance(obsk, int) or obsk < 0:
        raise ValueError(f"agent_obsk={obsk!r} is invalid; allowed: a non-negative int or None.")
    if fact is not None:
        _validate_factorization(fact)
    if cfg["obs_mode"] not in OBS_MODES:
        raise ValueError(f"obs_mode={cfg['obs_mode']!r} is invalid; allowed: {list(OBS_MODES)}.")
    if not isinstance(cfg["batched"], bool):
        raise ValueError(f"batched={cfg['batched']!r} is invalid; allowed: True or False.")
    if cfg["render_mode"] not in RENDER_MODES:
        raise ValueError(
            f"render_mode={cfg['render_mode']!r} is invalid; allowed: {list(RENDER_MODES)}."
        )
    if cfg["xml_file"] is not None:
        _validate_xml_file(cfg["xml_file"], scenario)


def _validate_xml_file(xml_file: Any, scenario: str) -> None:
    """Checks that ``xml_file`` names a model file as Gymnasium resolves it (a path starting
    with ``/``, ``.`` or ``~``, else a file of Gymnasium's MuJoCo assets)."""
    from gymnasium.envs.mujoco.mujoco_env import expand_model_path

    if scenario in SEGMENT_SCENARIOS:
        raise ValueError(
            f"xml_file={xml_file!r} is invalid for scenario {scenario!r}: the library generates "
            "its model; allowed: None."
        )
    if not isinstance(xml_file, str) or not xml_file:
        raise ValueError(
            f"xml_file={xml_file!r} is invalid; allowed: None or a MuJoCo model path (str)."
        )
    try:
        expand_model_path(xml_file)
    except OSError as error:
        raise ValueError(
            f"xml_file={xml_file!r} is invalid: {error}; allowed: None, a path starting with "
            "'/', '.' or '~', or a file of Gymnasium's MuJoCo assets (e.g. 'walker2d.xml')."
        ) from None


def _validate_factorization(fact: Any) -> None:
    """Checks the ``agent_factorization`` structure documented in :func:`make_mamujoco_env`."""
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import HyperEdge, Node

    def is_seq(x: Any, item_type: type) -> bool:
        return isinstance(x, Sequence) and all(isinstance(i, item_type) for i in x)

    if not (isinstance(fact, Mapping) and set(fact) == set(FACTORIZATION_KEYS)):
        raise ValueError(
            f"agent_factorization must be a dict with exactly the keys {list(FACTORIZATION_KEYS)}."
        )
    part = fact["partition"]
    if not (isinstance(part, Sequence) and part and all(is_seq(p, Node) and p for p in part)):
        raise ValueError(
            "agent_factorization['partition'] must be a non-empty list of non-empty tuples of "
            "obsk.Node (one tuple per agent)."
        )
    if not is_seq(fact["edges"], HyperEdge):
        raise ValueError("agent_factorization['edges'] must be a list of obsk.HyperEdge.")
    if not is_seq(fact["globals"], Node):
        raise ValueError("agent_factorization['globals'] must be a list of obsk.Node.")


def single_joint_factorization(scenario: str) -> dict[str, list[Any]]:
    """An ``agent_factorization`` with one agent per actuated joint (e.g. Walker2d 6x1,
    Humanoid 17x1, Hopper 3x1), agent ``i`` driving actuator ``i``.

    Built from the library's own joint graph of ``scenario``, so observations (``agent_obsk``
    neighbourhoods) follow the library's edges. Use it with any string ``agent_conf``.
    """
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    confs = [c for c in VALID_AGENT_CONFS.get(scenario, ()) if c is not None]
    if not confs:
        raise ValueError(
            f"scenario={scenario!r} has no joint graph; allowed: "
            f"{[s for s, c in VALID_AGENT_CONFS.items() if len(c) > 1]} "
            f"({list(SEGMENT_SCENARIOS)} take agent_conf '<n>x1' instead)."
        )
    parts, edges, global_nodes = get_parts_and_edges(scenario, confs[0])
    nodes = sorted((n for part in parts for n in part), key=lambda n: n.act_ids)
    return {"partition": [(n,) for n in nodes], "edges": edges, "globals": global_nodes}


FACTORIZATIONS: dict[str, Callable[[str], dict[str, list[Any]]]] = {
    "single_joint": single_joint_factorization,
}
"""Factorizations by name, for experiment files (YAML holds no obsk `Node`s):
`env_config.agent_factorization: single_joint`."""


def standardize(x: np.ndarray) -> np.ndarray:
    """HARL's normalisation of a vector: ``(x - mean(x)) / std(x)`` over its own entries
    (population std, no epsilon, as HARL's ``MujocoMulti``); a constant vector, where HARL
    would divide by zero, maps to zeros. With more dimensions, each vector along the last axis.

    Spelled out as numpy's ``mean`` and ``std`` compute them (the same bits, a third of the
    time: this runs at every env step)."""
    size = x.shape[-1]
    centered = x - np.add.reduce(x, axis=-1, keepdims=True) / size
    # population std: sqrt(mean((x − mean(x))²))
    std = np.sqrt(np.add.reduce(centered * centered, axis=-1, keepdims=True) / size)
    return centered / np.where(std > 0, std, 1.0)  # a constant vector maps to zeros


def harl_observations(state: np.ndarray, num_agents: int) -> np.ndarray:
    """HARL's global observations: for agent i, ``standardize(concat(state, one_hot(i)))``,
    standardized after the id is appended.

    Args:
        state: One state (S,), or states (..., S) of many env copies.
        num_agents: The number of agents.

    Returns:
        (num_agents, S + num_agents) rows for one state; (..., num_agents, S + num_agents)
        for many.
    """
    size = state.shape[-1]
    rows = np.empty((*state.shape[:-1], num_agents, size + num_agents))
    rows[..., :size] = state[..., None, :]
    rows[..., size:] = np.eye(num_agents)
    return standardize(rows)


def index_action_mapping(env: Any) -> Callable[[Mapping[str, np.ndarray]], np.ndarray] | None:
    """``env.map_local_actions_to_global_action`` with the actuator indices looked up once.

    The library walks every agent's body parts and checks the result for NaNs at every step
    (a tenth of a HalfCheetah step); here each agent's actions are written to the global
    action at its precomputed actuator indices, and the partition is checked once: every
    actuator driven by exactly one body part. None where the library has nothing to map (a
    single fully observing agent) or a body part drives other than one actuator.
    """
    if env.agent_obsk is None:
        return None
    act_ids = [[part.act_ids for part in partition] for partition in env.agent_action_partitions]
    if not all(isinstance(i, int) for ids in act_ids for i in ids):
        return None
    size = env.single_agent_env.action_space.shape[0]
    if sorted(i for ids in act_ids for i in ids) != list(range(size)):
        raise ValueError(
            f"agent_factorization: every one of the {size} actuators must be driven by exactly "
            f"one body part, got the actuator ids {act_ids}."
        )
    index = dict(zip(env.possible_agents, map(np.array, act_ids), strict=True))

    def map_actions(actions: Mapping[str, np.ndarray]) -> np.ndarray:
        global_action = np.empty(size)
        for agent, ids in index.items():
            global_action[ids] = actions[agent]
        return global_action

    return map_actions


def make_mamujoco_env(env_config: Mapping[str, Any] | None = None) -> ParallelStateEnv:
    """Builds a MaMuJoCo env; usable directly as an RLlib env creator (``EnvContext``).

    Keys of ``env_config`` (all optional, unknown keys are rejected):

    * ``scenario`` (``"HalfCheetah"``): one of :data:`SCENARIOS`.
    * ``agent_conf`` (``"2x3"``): see :data:`VALID_AGENT_CONFS`; ``"<n>x<m>"`` for the
      ManySegment scenarios; ``None`` = single agent.
    * ``agent_obsk`` (``1``): graph distance of the joints each agent observes.
    * ``agent_factorization`` (``None``): a custom split overriding ``agent_conf``'s, as
      ``mamujoco_v1`` expects it: ``{"partition": [tuple[Node, ...] per agent],
      "edges": [HyperEdge, ...], "globals": [Node, ...]}`` with ``Node``/``HyperEdge`` from
      ``gymnasium_robotics.envs.multiagent_mujoco.obsk``; each Node's ``act_ids`` is the
      actuator it drives, and every actuator must belong to exactly one agent. Easiest is to
      regroup the nodes of ``obsk.get_parts_and_edges(scenario, conf)``, see
      :func:`single_joint_factorization`. ``agent_conf`` must then be a string (a label).
    * ``obs_mode`` (``"local"``): ``"local"`` = the library's partial observations, global
      state = ``state()``; ``"global"`` = HARL's setting: agent i observes
      ``standardize(concat(state(), one_hot(i)))`` (:func:`harl_observations`), and the
      global state is ``standardize(state())`` (the library's local observations are not
      computed).
    * ``render_mode`` (``None``): ``None`` or ``"rgb_array"``.
    * ``batched`` (``True``): an EnvRunner steps its copies of this env together
      (:mod:`rllib_hatrpo.envs.batched_mamujoco`, the same environment several times faster)
      where that reproduces the library; ``False`` steps ``mamujoco_v1`` copies one by one.
    * ``xml_file`` (``None``): the MuJoCo model of the scenario's Gymnasium v5 env, passed to
      it as its ``xml_file`` (``None``: the env's own). E.g. ``"walker2d.xml"`` runs Walker2d
      on the v2–v4 model (right foot friction 0.9) under v5's code; not for the ManySegment
      scenarios, whose model the library generates.
    """
    from gymnasium_robotics import mamujoco_v1

    env_config = dict(env_config or {})
    validate_mamujoco_config(env_config)
    cfg = {**DEFAULT_CONFIG, **env_config}
    model = {} if cfg["xml_file"] is None else {"xml_file": cfg["xml_file"]}
    env = mamujoco_v1.parallel_env(
        cfg["scenario"],
        cfg["agent_conf"],
        agent_obsk=cfg["agent_obsk"],
        agent_factorization=cfg["agent_factorization"],
        render_mode=cfg["render_mode"],
        **model,  # mamujoco_v1 passes it on to the Gymnasium env
    )
    env.render_mode = cfg["render_mode"]  # The library keeps it on its inner gymnasium env only.
    map_actions = index_action_mapping(env)
    if map_actions is not None:
        env.map_local_actions_to_global_action = map_actions
    wrapped = ParallelStateEnv(env) if cfg["obs_mode"] == "local" else _global_obs_env(env)
    if cfg["batched"]:
        wrapped.make_batched_copies = functools.partial(_batched_copies, env_config)
    return wrapped


def _batched_copies(env_config: dict[str, Any], num_envs: int) -> Any:
    """`num_envs` copies stepped together, or None (see `TeamVectorEnv`'s batching hook)."""
    from rllib_hatrpo.envs.batched_mamujoco import make_batched_mamujoco

    return make_batched_mamujoco(env_config, num_envs)


def _global_obs_env(env: Any) -> ParallelStateEnv:
    """`env` with HARL's global observations and standardized state (``obs_mode: global``)."""

    agents = list(env.possible_agents)
    obs_dim = int(np.shape(env.state())[0]) + len(agents)
    box = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
    # Every agent observes the state, so the library's local observations (a walk over the
    # joint graph per agent, about a sixth of a step) are not computed: its step and reset
    # return None for each agent instead, which `global_obs` ignores.
    env._get_obs = functools.partial(dict.fromkeys, agents)
    # The rows of the latest raw state: ParallelStateEnv passes every agent of a step the same
    # state array, so the rows are computed once per step (the reference keeps it alive).
    latest: dict[str, np.ndarray | None] = {"state": None, "rows": None}

    def global_obs(index: int, _aid: str, _local: Any, raw_state: np.ndarray) -> np.ndarray:
        if latest["state"] is not raw_state:
            latest["state"], latest["rows"] = raw_state, harl_observations(raw_state, len(agents))
        return latest["rows"][index]

    return ParallelStateEnv(
        env,
        state_fn=standardize,
        obs_fn=global_obs,
        observation_spaces=dict.fromkeys(agents, box),
    )
