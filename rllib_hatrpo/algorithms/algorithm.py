"""The training iteration shared by every heterogeneous-agent algorithm."""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from typing import Any

import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import ALL_MODULES
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    EVALUATION_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)
from ray.tune import Checkpoint

from rllib_hatrpo.metrics import AGENT_ORDER, TEAM_RETURN, team_return
from rllib_hatrpo.operations.checkpointing import (
    algorithm_identity,
    check_checkpoint_class,
    check_restorable,
)
from rllib_hatrpo.operations.cluster_check import (
    Demand,
    ResourceError,
    check_before_actors,
    check_one_env_runner_fits,
    env_runner_demand,
)
from rllib_hatrpo.updates.data_parallel import shard_by_env_steps
from rllib_hatrpo.updates.sequential_update import AgentOrder

# Timers report this iteration's seconds (RLlib's default is a slow moving average).
_THIS_ITERATION = {"reduce": "mean", "window": 1}
_RECOVERY_POLL_S = 1.0
logger = logging.getLogger(__name__)


class EnvRunnersLostError(RuntimeError):
    """Every remote EnvRunner is lost and Ray cannot bring one back: no node of the cluster
    can host one any more, or none came back within `env_runner_recovery_timeout_s`. The
    learner's state is that of the last completed iteration; resume from a checkpoint."""


def learner_data(episodes: list, num_learners: int) -> dict[str, Any]:
    """The `LearnerGroup.update` keyword that hands each learner whole episode fragments.

    RLlib's own sharding cuts episodes at arbitrary steps, which would turn a cut into a false
    truncation for GAE; here each learner gets one object ref of whole fragments instead.
    """
    if num_learners <= 1:
        return {"episodes": episodes}
    return {"episodes_refs": [ray.put(s) for s in shard_by_env_steps(episodes, num_learners)]}


def absolute_local_path(path: Any, filesystem: Any = None) -> Any:
    """A relative local path made absolute (pyarrow, which RLlib reads checkpoints with, takes
    none); URIs, paths on a given filesystem and absolute paths are returned as they are."""
    if filesystem is None and isinstance(path, str | os.PathLike) and "://" not in str(path):
        return os.path.abspath(path)
    return path


class HAAlgorithm(Algorithm):
    """Samples, draws this iteration's agent order, runs the learner update, syncs weights."""

    @override(Algorithm)
    def setup(self, config) -> None:
        # Fail fast, naming the resource, where Ray would keep the actors pending forever.
        check_before_actors(self.config)
        super().setup(config)
        # A generator of its own, so the order sequence depends on the seed alone.
        self.agent_order = AgentOrder(
            self.config.module_ids(), self.config.seed, fixed=self.config.fixed_order
        )
        self._last_agent_order: list[str] = []

    @override(Algorithm)
    def restore_env_runners(self, env_runner_group) -> list[int]:
        """RLlib's (bring restarted EnvRunners back into service with the current weights), and
        then, while no remote EnvRunner of the training group is healthy, wait for Ray to
        restart one instead of running a `training_step` that samples nothing.

        Raises:
            EnvRunnersLostError: When no node of the cluster can host an EnvRunner any more
                (the restarted actors would stay pending forever), or when none came back
                within `env_runner_recovery_timeout_s`.
        """
        restored = super().restore_env_runners(env_runner_group)
        if env_runner_group is not self.env_runner_group:
            return restored
        start = time.monotonic()
        while (
            env_runner_group.num_remote_env_runners() > 0
            and env_runner_group.num_healthy_remote_env_runners() == 0
        ):
            self._raise_if_env_runners_cannot_return(time.monotonic() - start)
            time.sleep(_RECOVERY_POLL_S)
            restored += super().restore_env_runners(env_runner_group)
        if time.monotonic() - start > _RECOVERY_POLL_S:
            logger.warning(
                "EnvRunners back after %.0f s without any: %s",
                time.monotonic() - start,
                restored,
            )
        return restored

    @functools.cached_property
    def _env_runner_demand(self) -> Demand | None:
        """What one EnvRunner reserves; computed once, when a recovery first needs it (it
        builds RLlib's resource request, which probes the env)."""
        return env_runner_demand(self.config)

    def _raise_if_env_runners_cannot_return(self, waited_s: float) -> None:
        lost = self.env_runner_group.num_remote_env_runners()
        runners = "The only remote EnvRunner" if lost == 1 else f"All {lost} remote EnvRunners"
        what = (
            f"{runners} of this {type(self).__name__} {'is' if lost == 1 else 'are'} lost "
            f"(training iteration {self.iteration + 1})"
        )
        resume = (
            "The learner's state is that of iteration "
            f"{self.iteration}; continue from the last checkpoint (`rllib-hatrpo resume "
            "RUN_DIR`) once the cluster can host EnvRunners again."
        )
        try:
            check_one_env_runner_fits(self._env_runner_demand)
        except ResourceError as err:
            raise EnvRunnersLostError(
                f"{what} and no node of the cluster can host one any more:\n{err}\n{resume}"
            ) from None
        limit = self.config.env_runner_recovery_timeout_s
        if waited_s > limit:
            raise EnvRunnersLostError(
                f"{what} and Ray has not restarted any within {limit:g} s "
                f"(env_runner_recovery_timeout_s).\n{resume}"
            )

    @override(Algorithm)
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        """RLlib's state plus the agent-order generator, so a resumed run draws the same orders."""
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(AGENT_ORDER, components, not_components):
            state[AGENT_ORDER] = self.agent_order.get_state()
        return state

    @override(Algorithm)
    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if AGENT_ORDER in state:
            self.agent_order.set_state(state[AGENT_ORDER])

    @override(Checkpointable)
    def get_metadata(self) -> dict:
        """RLlib's metadata plus the algorithm class and the team, which restoring checks."""
        return {**super().get_metadata(), **algorithm_identity(self)}

    @classmethod
    @override(Algorithm)
    def from_checkpoint(cls, path, filesystem=None, **kwargs) -> Algorithm:
        """RLlib's, after checking that the checkpoint holds a `cls` (or a subclass of it), so
        that e.g. `HATRPO.from_checkpoint` of a HAPPO checkpoint says so before building."""
        if isinstance(path, Checkpoint):
            path = path.to_directory()
        path = absolute_local_path(path, filesystem)
        check_checkpoint_class(path, cls, filesystem)
        return super().from_checkpoint(path, filesystem, **kwargs)

    @override(Algorithm)
    def restore_from_path(self, path, *args, **kwargs) -> None:
        """RLlib's, after checking that the checkpoint was written by this algorithm class on
        the same agents, policy modules and spaces (a ValueError names every difference)."""
        path = absolute_local_path(path, kwargs.get("filesystem"))
        if kwargs.get("component") is None:
            check_restorable(path, self, kwargs.get("filesystem"))
        super().restore_from_path(path, *args, **kwargs)

    @override(Algorithm)
    def step(self) -> dict:
        """RLlib's step, plus this iteration's agent order as a list and the team return (of
        the training episodes, and of the evaluation when it ran; NaN until an episode ended)
        in the result."""
        result = super().step()
        result[AGENT_ORDER] = list(self._last_agent_order)
        for part in (result, result.get(EVALUATION_RESULTS)):
            if part is not None:
                value = team_return(part)
                part[TEAM_RETURN] = math.nan if value is None else value
        return result

    @override(Algorithm)
    def evaluate(self, *args, **kwargs) -> dict:
        """RLlib's evaluation; without evaluation EnvRunners it needs an env on the driver.

        Raises:
            ValueError: Naming the settings to use, when there are no evaluation EnvRunners
                and the driver's EnvRunner has no env (it has none when remote EnvRunners
                sample).
        """
        if self.eval_env_runner_group is None and getattr(self.env_runner, "env", None) is None:
            raise ValueError(
                f"{type(self).__name__}.evaluate() has no env to evaluate in: the driver's "
                f"EnvRunner has none while remote EnvRunners sample (num_env_runners="
                f"{self.config.num_env_runners}). Give the config evaluation EnvRunners, e.g. "
                "config.evaluation(evaluation_num_env_runners=1, evaluation_duration=10, "
                "evaluation_duration_unit='episodes'), or one with an env on the driver: "
                "config.env_runners(create_env_on_local_env_runner=True)."
            )
        return super().evaluate(*args, **kwargs)

    @override(Algorithm)
    def training_step(self) -> None:
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER), **_THIS_ITERATION):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=self.config.total_train_batch_size,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        if not episodes:
            return
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        order = self.agent_order.next()
        self._last_agent_order = order
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER), **_THIS_ITERATION):
            learner_results = self.learner_group.update(
                **learner_data(episodes, self.config.num_learners),
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                },
                agent_order=order,
            )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER), **_THIS_ITERATION):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(order) - {ALL_MODULES},
                inference_only=True,
            )
