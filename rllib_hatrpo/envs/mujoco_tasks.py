"""The reward and termination of Gymnasium's v5 locomotion tasks, for many env copies at once.

Each function mirrors its task's `step` (Gymnasium 1.x, `gymnasium/envs/mujoco/*_v5.py`), term
by term and in the same order of operations, so the rewards equal Gymnasium's to the last bit
or within float rounding; the task's own parameters (weights, healthy ranges) are read from
the env instance, so non-default ones carry over. Tasks not listed here step through
Gymnasium's own `step`, one copy at a time (`BatchedMaMuJoCo` chooses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rllib_hatrpo.envs.mujoco_gather import SourceLayout

Terms = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""`terms(x_before, source, actions) -> (rewards, terminated)` for all copies: `x_before` the
forward position before the step, `source` the copies' source rows after it, `actions` the
global actions (rows)."""


@dataclass(frozen=True)
class VectorizedTask:
    """A task's step terms for many copies.

    Attributes:
        fields: The `MjData` fields the terms read (they join the source rows).
        x_column: Builds, from the source layout, the column of the forward position.
        terms: Builds, from the source layout, the step's rewards and terminations.
        needs_contact_forces: Whether `mj_rnePostConstraint` must run after each step (the
            terms read `cfrc_ext`).
    """

    fields: tuple[str, ...]
    x_column: Callable[[SourceLayout], int]
    terms: Callable[[SourceLayout], Terms]
    needs_contact_forces: bool = False


def vectorized_task(env: object) -> VectorizedTask | None:
    """The vectorized terms of `env` (an unwrapped Gymnasium v5 MuJoCo env), or None for a task
    without them."""
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
    from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

    builders = {
        HalfCheetahEnv: _forward_only,
        SwimmerEnv: _forward_only,
        HopperEnv: _hopper,
        Walker2dEnv: _walker2d,
        AntEnv: _ant,
    }
    builder = builders.get(type(env))
    return None if builder is None else builder(env)


def _qpos(layout: SourceLayout, i: int) -> int:
    return layout.slices["qpos"].start + i


def _ctrl_cost(env: object, actions: np.ndarray) -> np.ndarray:
    return env._ctrl_cost_weight * np.sum(np.square(actions), axis=1)  # ctrl_cost = w·Σa²


def _forward_only(env: object) -> VectorizedTask:
    """HalfCheetah, Swimmer: reward = w_f·ẋ − w_c·Σa²; never terminates."""

    def terms(layout: SourceLayout) -> Terms:
        x = _qpos(layout, 0)

        def step_terms(x_before, source, actions):
            x_velocity = (source[:, x] - x_before) / env.dt  # ẋ = Δx / dt
            reward = env._forward_reward_weight * x_velocity - _ctrl_cost(env, actions)
            return reward, np.zeros(len(source), dtype=bool)

        return step_terms

    return VectorizedTask(("qpos",), lambda layout: _qpos(layout, 0), terms)


def _healthy_step(
    env: object,
    healthy: Callable[[np.ndarray], np.ndarray],
    x_column: int,
    contact_cost: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Terms:
    """Hopper, Walker2d, Ant: reward = (w_f·ẋ + healthy·r_h) − costs, costs = w_c·Σa² (+ Ant's
    contact cost); terminated = not healthy (with `terminate_when_unhealthy`)."""

    def step_terms(x_before, source, actions):
        x_velocity = (source[:, x_column] - x_before) / env.dt  # ẋ = Δx / dt
        is_healthy = healthy(source)
        rewards = env._forward_reward_weight * x_velocity + is_healthy * env._healthy_reward
        costs = _ctrl_cost(env, actions)
        if contact_cost is not None:
            costs = costs + contact_cost(source)
        return rewards - costs, ~is_healthy & bool(env._terminate_when_unhealthy)

    return step_terms


def _open(bounds: tuple[float, float], x: np.ndarray) -> np.ndarray:
    """low < x < high, elementwise (Gymnasium's healthy-range test)."""
    return (bounds[0] < x) & (x < bounds[1])


def _hopper(env: object) -> VectorizedTask:
    """Hopper: healthy = qpos[2:] and qvel inside the state range, z and angle in theirs."""

    def terms(layout: SourceLayout) -> Terms:
        z, angle = _qpos(layout, 1), _qpos(layout, 2)
        qpos, qvel = layout.slices["qpos"], layout.slices["qvel"]
        state = np.r_[np.arange(qpos.start + 2, qpos.stop), np.arange(qvel.start, qvel.stop)]

        def healthy(source):
            return (
                np.all(_open(env._healthy_state_range, source[:, state]), axis=1)
                & _open(env._healthy_z_range, source[:, z])
                & _open(env._healthy_angle_range, source[:, angle])
            )

        return _healthy_step(env, healthy, _qpos(layout, 0))

    return VectorizedTask(("qpos", "qvel"), lambda layout: _qpos(layout, 0), terms)


def _walker2d(env: object) -> VectorizedTask:
    """Walker2d: healthy = z and angle in their ranges."""

    def terms(layout: SourceLayout) -> Terms:
        z, angle = _qpos(layout, 1), _qpos(layout, 2)

        def healthy(source):
            return _open(env._healthy_z_range, source[:, z]) & _open(
                env._healthy_angle_range, source[:, angle]
            )

        return _healthy_step(env, healthy, _qpos(layout, 0))

    return VectorizedTask(("qpos", "qvel"), lambda layout: _qpos(layout, 0), terms)


def _ant(env: object) -> VectorizedTask:
    """Ant: forward = the main body's x; healthy = qpos, qvel finite and min_z <= qpos[2] <=
    max_z; costs add w_contact·Σclip(cfrc_ext)²."""
    body = env.data.body(env._main_body).id

    def x_column(layout: SourceLayout) -> int:
        return layout.slices["xpos"].start + 3 * body

    def terms(layout: SourceLayout) -> Terms:
        qpos, qvel = layout.slices["qpos"], layout.slices["qvel"]
        state = np.r_[np.arange(qpos.start, qpos.stop), np.arange(qvel.start, qvel.stop)]
        z = _qpos(layout, 2)
        low, high = env._healthy_z_range

        def healthy(source):
            return (
                np.all(np.isfinite(source[:, state]), axis=1)
                & (low <= source[:, z])
                & (source[:, z] <= high)
            )

        forces = layout.slices["cfrc_ext"]

        def contact_cost(source):  # w_contact · Σ clip(cfrc_ext, range)²
            clipped = np.clip(source[:, forces], *env._contact_force_range)
            return env._contact_cost_weight * np.sum(np.square(clipped), axis=1)

        return _healthy_step(env, healthy, x_column(layout), contact_cost)

    return VectorizedTask(
        ("qpos", "qvel", "xpos", "cfrc_ext"), x_column, terms, needs_contact_forces=True
    )
