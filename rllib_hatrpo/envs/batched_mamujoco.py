"""MaMuJoCo env copies stepped together: the same environment as `mamujoco_v1`, without its
per-copy, per-agent Python.

`TeamVectorEnv` steps `mamujoco_v1` copies one by one, and most of a step's time goes to the
layers above the physics: the library's observation walk per agent, PettingZoo's and our
wrapper's dicts. `BatchedMaMuJoCo` keeps only the physics per copy and computes the rest for all
copies at once:

* actions: every agent's rows written into the global action at its actuator indices;
* physics: per copy, MuJoCo's `mj_step` (and `mj_rnePostConstraint` where contact forces are
  read), exactly as Gymnasium's `do_simulation` calls them;
* rewards and terminations: the task's terms vectorized (:mod:`mujoco_tasks`: HalfCheetah,
  Hopper, Walker2d, Ant, Swimmer and the ManySegment ones); other tasks call Gymnasium's own
  `step` per copy ("stepwise");
* observations: every agent's and the global state as index gathers from one (copies, source)
  matrix of the data fields (:mod:`mujoco_gather`), or HARL's global observations
  (`obs_mode: global`) computed for all rows in one expression;
* resets: Gymnasium's own `reset` of the copy (same noise law and seeding), the time limit
  counted here as Gymnasium's `TimeLimit` does.

:func:`make_batched_mamujoco` returns None, and the caller keeps `mamujoco_v1` copies, where
this cannot reproduce the library: rendering, or an observation that is not a gather (Reacher's
local observations contain a difference of two bodies' positions). The equivalence with
`mamujoco_v1` is tested step by step from identical states (`tests/envs/test_batched_mamujoco`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from rllib_hatrpo.envs.mamujoco import (
    DEFAULT_CONFIG,
    harl_observations,
    make_mamujoco_env,
    standardize,
)
from rllib_hatrpo.envs.mujoco_gather import GatherSpec, SourceLayout, probe_gather
from rllib_hatrpo.envs.mujoco_tasks import VectorizedTask, vectorized_task
from rllib_hatrpo.envs.team_step import Batch, TeamStep

logger = logging.getLogger(__name__)
_LOGGED: set[tuple] = set()
"""The configurations whose fallback to `mamujoco_v1` copies was logged in this process."""


class BatchedMaMuJoCo:
    """`num_envs` MaMuJoCo copies with the interface of `TeamVectorEnv`.

    Build it with :func:`make_batched_mamujoco`.
    """

    def __init__(
        self,
        envs: list[Any],
        state_spec: GatherSpec | None,
        agent_specs: list[GatherSpec] | None,
        layout: SourceLayout,
        task: VectorizedTask | None,
        obs_mode: str,
    ) -> None:
        first = envs[0]
        par = first.par_env
        self._wrappers = envs
        self._gyms = [env.par_env.single_agent_env.unwrapped for env in envs]
        self._datas = [g.data for g in self._gyms]
        self._model = self._gyms[0].model
        self._frame_skip = self._gyms[0].frame_skip
        self._max_steps = par.single_agent_env.spec.max_episode_steps
        self.agents: list[str] = list(first.possible_agents)
        self.observation_spaces: dict[str, gym.Space] = {
            a: first.get_observation_space(a) for a in self.agents
        }
        self.action_spaces: dict[str, gym.Space] = {
            a: first.get_action_space(a) for a in self.agents
        }
        self._act_ids = [
            np.array([part.act_ids for part in partition])
            for partition in par.agent_action_partitions
        ]
        self._num_actuators = self._model.nu
        self._state_spec, self._agent_specs = state_spec, agent_specs
        self._task = task
        self._global = obs_mode == "global"
        n = len(envs)
        self._source = np.empty((n, layout.width))
        self._raw_states = np.empty((n, first.state_space.shape[0]))
        self._copies = [
            layout.copies(row, data) for row, data in zip(self._source, self._datas, strict=True)
        ]
        self._elapsed = np.zeros(n, dtype=np.int64)
        if task is not None:
            self._x_column = task.x_column(layout)
            self._terms = task.terms(layout)
            # Gymnasium always computes the contact forces after a step; nothing else reads
            # them, and the next step does not depend on them.
            self._rne = task.needs_contact_forces or "cfrc_ext" in layout.fields

    @property
    def num_envs(self) -> int:
        return len(self._gyms)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Batch:
        """Resets every copy; with `seed`, copy i with `seed + i` (as `TeamVectorEnv`)."""
        for i in range(self.num_envs):
            self._reset_copy(i, None if seed is None else seed + i, options)
        return self._observations()

    def step(self, actions: Mapping[str, np.ndarray]) -> TeamStep:
        """Steps copy i with row i of every agent's actions; resets the copies that are done."""
        n = self.num_envs
        global_actions = np.empty((n, self._num_actuators))
        for agent, ids in zip(self.agents, self._act_ids, strict=True):
            global_actions[:, ids] = actions[agent]
        if self._task is not None:
            rewards, terminated = self._step_physics(global_actions)
        else:
            rewards, terminated = self._step_gymnasium(global_actions)
        self._elapsed += 1
        truncated = ~terminated & (self._elapsed >= self._max_steps)  # Gymnasium's TimeLimit
        obs, states = self._observations()
        final_states: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(terminated | truncated).tolist():
            final_states[i] = states[i].copy()
            self._reset_copy(i, None, None)
        if final_states:
            obs, states = self._observations()
        team_rewards = np.repeat(rewards[:, None], len(self.agents), axis=1)
        return TeamStep(obs, states, team_rewards, terminated, truncated, final_states)

    def close(self) -> None:
        for env in self._wrappers:
            env.close()

    # --- internals -----------------------------------------------------------------------

    def _step_physics(self, global_actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MuJoCo steps per copy (Gymnasium's `do_simulation`), the task's terms for all."""
        x_before = self._source[:, self._x_column].copy()
        model, nstep, rne = self._model, self._frame_skip, self._rne
        for data, action, copies in zip(self._datas, global_actions, self._copies, strict=True):
            data.ctrl[:] = action
            mujoco.mj_step(model, data, nstep=nstep)
            if rne:
                mujoco.mj_rnePostConstraint(model, data)
            for destination, source in copies:
                destination[...] = source
        rewards, terminated = self._terms(x_before, self._source, global_actions)
        return rewards, terminated

    def _step_gymnasium(self, global_actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gymnasium's `step` per copy, for the tasks without vectorized terms."""
        n = self.num_envs
        rewards, terminated = np.empty(n), np.zeros(n, dtype=bool)
        for i, (env, action) in enumerate(zip(self._gyms, global_actions, strict=True)):
            state, rewards[i], terminated[i], _, _ = env.step(action)
            self._raw_states[i] = state
            self._fill(i)
        return rewards, terminated

    def _reset_copy(self, i: int, seed: int | None, options: dict | None) -> None:
        state, _ = self._gyms[i].reset(seed=seed, options=options)
        self._raw_states[i] = state
        self._fill(i)
        self._elapsed[i] = 0

    def _fill(self, i: int) -> None:
        """Copies copy i's data fields into its source row."""
        for destination, source in self._copies[i]:
            destination[...] = source

    def _observations(self) -> Batch:
        """Every agent's observations and the global states of all copies (float32)."""
        raw = self._raw_states if self._task is None else self._state_spec(self._source)
        if self._global:
            rows = harl_observations(raw, len(self.agents))  # (copies, agents, obs)
            obs = {a: rows[:, k].astype(np.float32) for k, a in enumerate(self.agents)}
            return obs, standardize(raw).astype(np.float32)
        obs = {
            a: spec(self._source).astype(np.float32)
            for a, spec in zip(self.agents, self._agent_specs, strict=True)
        }
        return obs, raw.astype(np.float32)


def make_batched_mamujoco(env_config: Mapping[str, Any], num_envs: int) -> BatchedMaMuJoCo | None:
    """`num_envs` copies of the MaMuJoCo env of `env_config` stepped together, or None where
    only `mamujoco_v1` copies reproduce it (logged once per configuration)."""
    envs = [make_mamujoco_env({**env_config, "batched": False}) for _ in range(num_envs)]
    built = _batched(envs, env_config)
    if isinstance(built, str):
        cfg = {**DEFAULT_CONFIG, **env_config}
        key = tuple(str(cfg[k]) for k in ("scenario", "agent_conf", "agent_obsk", "obs_mode"))
        if (key, built) not in _LOGGED:
            _LOGGED.add((key, built))
            logger.info(
                "MaMuJoCo %s %s (agent_obsk %s, obs_mode %s): stepping the mamujoco_v1 copies "
                "one by one: %s.",
                *key,
                built,
            )
        for env in envs:
            env.close()
        return None
    return built


def _batched(envs: list[Any], env_config: Mapping[str, Any]) -> BatchedMaMuJoCo | str:
    """The batched env, or why there is none."""
    cfg = {**DEFAULT_CONFIG, **env_config}
    if cfg["render_mode"] is not None:
        return "rendering is done by the library's env"
    par = envs[0].par_env
    gym_env = par.single_agent_env.unwrapped
    scratch = mujoco.MjData(gym_env.model)
    full = SourceLayout.of(scratch)
    task = vectorized_task(gym_env)

    def observe_with(fn):
        def observe(data):
            live, gym_env.data = gym_env.data, data
            try:
                return fn()
            finally:
                gym_env.data = live

        return observe

    specs: list[GatherSpec] = []
    if task is not None:  # the state from the source rows (else from Gymnasium's step)
        state = probe_gather(observe_with(gym_env._get_obs), scratch, full)
        if state is None:
            return "its state is not a gather of MjData entries"
        specs.append(state)
    if cfg["obs_mode"] == "local":
        for k in range(len(par.possible_agents)):
            spec = probe_gather(observe_with(lambda k=k: par._get_obs_agent(k)), scratch, full)
            if spec is None:
                return f"agent {k}'s observation is not a gather of MjData entries"
            specs.append(spec)
    used = set(task.fields if task is not None else ())
    for spec in specs:
        used |= spec.fields(full)
    layout = SourceLayout.of(scratch, tuple(used))
    specs = [spec.restricted(layout, full) for spec in specs]
    state_spec = specs.pop(0) if task is not None else None
    return BatchedMaMuJoCo(envs, state_spec, specs or None, layout, task, cfg["obs_mode"])
