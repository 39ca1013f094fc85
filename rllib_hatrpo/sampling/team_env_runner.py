"""The EnvRunner of every heterogeneous-agent algorithm: vectorized team envs, batched actions,
rows straight into numpy arrays.

RLlib's generic `MultiAgentEnvRunner` spends most of its time outside the simulator: per env
step it runs connector pipelines over dicts of single items, appends to episode objects agent
by agent and logs metrics one value at a time. Our envs are all team envs (`ParallelStateEnv`:
every agent acts at every step, the global state in every agent's info), which allows a much
leaner loop. Per step of the `num_envs_per_env_runner` env copies (stepped in this process by
the env itself where it offers batched copies, as MaMuJoCo does, else by a `TeamVectorEnv`),
`TeamEnvRunner` makes one batched forward pass per policy module over all copies and
all agents mapped to that module, samples the actions (their mean with `explore=False`), maps
them into the env's action space as RLlib's connectors would (`normalize_actions` unsquashes,
else `clip_actions` clips) and writes observations, actions, states and team rewards into
arrays preallocated for the whole `sample()` call. The call returns `TeamFragment`s: per env
copy, one fragment per episode that ended in the call (terminated or truncated) and one for the
steps after its last end (cut by the batch end, bootstrapped from the state after it).

It keeps RLlib's EnvRunner contract: `sample(num_timesteps=..., num_episodes=...,
explore=..., force_reset=...)` with RLlib's stopping, reset and seeding rules (copy i of
runner w is seeded with `seed + w + i` on the first reset and whenever `num_episodes` were
sampled; episodes continue across `num_timesteps` calls), the metrics of `MultiAgentEnvRunner`
under the same keys and reductions, weights through `set_state` (inference-only modules: the
learner-only critic is never built here), checkpoints, `assert_healthy` and `stop`.

Not supported (`check_team_env_runner_config` rejects them): custom env-to-module and
module-to-env connectors and the EnvRunner's callbacks (`on_environment_created`, the episode
callbacks, `on_sample_end`), since there are no connector pipelines and no episode objects.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Collection, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch
import tree
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import COMPONENT_RL_MODULE
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.env import INPUT_ENV_SINGLE_SPACES, INPUT_ENV_SPACES
from ray.rllib.env.env_runner import ENV_STEP_FAILURE, EnvRunner
from ray.rllib.utils.annotations import override
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.framework import get_device
from ray.rllib.utils.metrics import (
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    RLMODULE_INFERENCE_TIMER,
    SAMPLE_TIMER,
    TIME_BETWEEN_SAMPLING,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action
from ray.rllib.utils.typing import ResultDict, StateDict

from rllib_hatrpo.sampling.env_probe import build_env
from rllib_hatrpo.sampling.rollout import Rollout
from rllib_hatrpo.sampling.runner_metrics import EpisodeTracker, log_sampled_steps
from rllib_hatrpo.sampling.team_fragment import Obs, TeamFragment, concat_rows
from rllib_hatrpo.sampling.vector_env import TeamVectorEnv, make_team_vector_env

_EPISODES_CAPACITY = 256
"""Vector steps preallocated for a `num_episodes` call (doubled whenever they run out)."""


def env_action(config: AlgorithmConfig, action: np.ndarray, space: gym.Space) -> np.ndarray:
    """A policy's action (rows) mapped into the env's action space as RLlib's
    `NormalizeAndClipActions` does: unsquashed from [-1, 1] with `normalize_actions`, else
    clipped to the bounds with `clip_actions`, else unchanged."""
    if config.normalize_actions:
        return unsquash_action(action, space)
    if config.clip_actions:
        return clip_action(action, space)
    return action


def check_team_env_runner_config(config: AlgorithmConfig) -> None:
    """Raises ValueError for settings `TeamEnvRunner` cannot honour (see the module docstring)."""
    if not (
        isinstance(config.env_runner_cls, type) and issubclass(config.env_runner_cls, TeamEnvRunner)
    ):
        raise ValueError(
            f"env_runner_cls={config.env_runner_cls!r} is invalid: must be TeamEnvRunner (or a "
            "subclass); the learner takes its TeamFragments."
        )
    unsupported = {
        "env_to_module_connector": config._env_to_module_connector,
        "module_to_env_connector": config._module_to_env_connector,
        **{
            f"callbacks_{hook}": getattr(config, f"callbacks_{hook}")
            for hook in (
                "on_environment_created",
                "on_episode_created",
                "on_episode_start",
                "on_episode_step",
                "on_episode_end",
                "on_sample_end",
            )
        },
    }
    for field, value in unsupported.items():
        if value is not None:
            raise ValueError(
                f"{field}={value!r} is not supported: TeamEnvRunner has no connector pipelines "
                "and no episode objects."
            )


class TeamEnvRunner(EnvRunner, Checkpointable):
    """Samples `TeamFragment`s from `num_envs_per_env_runner` copies of a team env."""

    @override(EnvRunner)
    def __init__(self, config: AlgorithmConfig, **kwargs) -> None:
        super().__init__(config=config, **kwargs)
        self.spaces: dict[str, Any] = kwargs.get("spaces") or {}
        self._device = get_device(
            self.config, 0 if not self.worker_index else self.config.num_gpus_per_env_runner
        )
        self.env: TeamVectorEnv | None = None
        self.num_envs = 0
        # The driver's EnvRunner needs no env when remote EnvRunners sample (RLlib's rule).
        if (
            self.worker_index is None
            or self.worker_index > 0
            or self.config.create_env_on_local_worker
            or self.config.num_env_runners == 0
        ):
            self.make_env()
        self.module: MultiRLModule | None = None
        self.make_module()
        self._weights_seq_no = 0
        self._time_after_sampling: float | None = None

    # --- sampling ------------------------------------------------------------------------

    @override(EnvRunner)
    def sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool | None = None,
        force_reset: bool = False,
    ) -> list[TeamFragment]:
        """Steps every env copy until `num_timesteps` env steps or `num_episodes` episodes.

        Args:
            num_timesteps: At least this many env steps: ceil(num_timesteps / num_envs) steps
                of every copy. Episodes going on at the end continue in the next call.
            num_episodes: This many complete episodes (all copies reset first; episodes still
                going on when the count is reached are dropped, and the next call resets).
            explore: Sample from each policy's action distribution (True) or take its mean
                (False); default `config.explore`.
            force_reset: Reset every copy first (only with `num_timesteps`).

        Without either count, `batch_mode="truncate_episodes"` samples the rollout fragment
        length times `num_envs` env steps, `"complete_episodes"` `num_envs` episodes.

        Returns:
            The fragments: first those whose episode ended, in the order they ended, then the
            cut ones in copy order (`num_timesteps` only).
        """
        if self.env is None:
            raise ValueError(f"{self} has no env (the driver's EnvRunner with remote ones).")
        if num_timesteps is not None and num_episodes is not None:
            raise ValueError(
                f"Give num_timesteps or num_episodes, not both ({num_timesteps=}, {num_episodes=})."
            )
        if self._time_after_sampling is not None:
            self.metrics.log_value(
                TIME_BETWEEN_SAMPLING, time.perf_counter() - self._time_after_sampling
            )
        self.metrics.log_value(WEIGHTS_SEQ_NO, self._weights_seq_no, window=1)
        with self.metrics.log_time(SAMPLE_TIMER), one_torch_thread():
            explore = self.config.explore if explore is None else explore
            if num_timesteps is None and num_episodes is None:
                if self.config.batch_mode == "truncate_episodes":
                    num_timesteps = (
                        self.config.get_rollout_fragment_length(self.worker_index) * self.num_envs
                    )
                else:
                    num_episodes = self.num_envs
            if num_episodes is not None:
                fragments = self._sample(explore, reset=True, num_episodes=num_episodes)
                self._needs_initial_reset = True  # the next call starts from seeded resets
            else:
                steps = math.ceil(num_timesteps / self.num_envs)
                fragments = self._sample(explore, reset=force_reset, num_steps=steps)
        self._time_after_sampling = time.perf_counter()
        return fragments

    def _sample(
        self,
        explore: bool,
        *,
        reset: bool,
        num_steps: int | None = None,
        num_episodes: int | None = None,
    ) -> list[TeamFragment]:
        """Steps all copies `num_steps` times, or until `num_episodes` episodes ended."""
        if reset or self._needs_initial_reset:
            self._reset_envs()
        rollout = Rollout(self._obs, self._states, num_steps or _EPISODES_CAPACITY)
        ended: list[TeamFragment] = []
        t = 0
        while (t < num_steps) if num_episodes is None else (len(ended) < num_episodes):
            with self.metrics.log_time(RLMODULE_INFERENCE_TIMER), torch.inference_mode():
                actions = self.act(rollout.obs_at(t), explore)
            step = self._try_env_step(self.env_actions(actions))
            if step is ENV_STEP_FAILURE:  # the envs were rebuilt: start this call over
                self._log_sampled(t)
                self._reset_envs()
                rollout = Rollout(self._obs, self._states, num_steps or _EPISODES_CAPACITY)
                ended, t = [], 0
                continue
            rollout.write(t, actions, step)
            self._episodes.add(step.rewards)
            for i in np.flatnonzero(step.terminated | step.truncated).tolist():
                if num_episodes is not None and len(ended) == num_episodes:
                    break  # enough episodes: later ones this step are dropped, as RLlib does
                ended.append(rollout.end_episode(t, i, step))
                self._episodes.log_end(i, self.metrics)
            t += 1
        self._log_sampled(t)
        if num_episodes is not None:
            return ended
        # copies: the rollout's arrays are not kept beyond this call
        self._obs = tree.map_structure(np.copy, rollout.obs_at(t))
        self._states = rollout.states[t].copy()
        return ended + rollout.cut_fragments(t)

    def act(self, obs: dict[str, Obs], explore: bool) -> dict[str, np.ndarray]:
        """Every agent's actions (rows = copies) on every agent's observations `obs`: one
        forward pass per policy module over the rows of all its agents; sampled when exploring,
        else the distribution's mean. Call it under `torch.inference_mode()`, as `sample` does."""
        actions: dict[str, np.ndarray] = {}
        for module_id, agents in self._agents_of_module.items():
            module = self.module[module_id]
            rows = obs[agents[0]] if len(agents) == 1 else concat_rows([obs[a] for a in agents])
            batch = {
                Columns.OBS: tree.map_structure(
                    lambda x: torch.from_numpy(x).to(self._device), rows
                )
            }
            # The modules stay in eval mode (make_module), so the private forward methods are
            # what RLlib's public ones run, without switching modes at every call.
            if explore:
                inputs = module._forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
                dist = module.get_exploration_action_dist_cls().from_logits(inputs)
            else:
                inputs = module._forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
                dist = module.get_inference_action_dist_cls().from_logits(inputs).to_deterministic()
            sampled = dist.sample().cpu().numpy()
            for j, agent in enumerate(agents):
                actions[agent] = sampled[j * self.num_envs : (j + 1) * self.num_envs]
        return actions

    def env_actions(self, actions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The policies' `actions` mapped into the env's action spaces (:func:`env_action`)."""
        return {
            a: env_action(self.config, x, self.env.action_spaces[a]) for a, x in actions.items()
        }

    def _reset_envs(self) -> None:
        """Resets every copy (seeded on the first reset after `make_env` and after a
        `num_episodes` call) and starts its episode bookkeeping over."""
        self._obs, self._states = self._try_env_reset(
            seed=self._seed if self._needs_initial_reset else None
        )
        self._needs_initial_reset = False
        self._episodes.restart(self.num_envs)

    def _log_sampled(self, num_steps: int) -> None:
        """Counts `num_steps` steps of every copy (every agent acting at each)."""
        env_steps = num_steps * self.num_envs
        if env_steps:
            log_sampled_steps(self.metrics, env_steps, self._agents_of_module)
            self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=env_steps)

    @override(EnvRunner)
    def get_metrics(self) -> ResultDict:
        return self.metrics.reduce()

    # --- env, modules, spaces --------------------------------------------------------------

    @override(EnvRunner)
    def make_env(self) -> None:
        """(Re)builds the env copies with the config's env creator; the next sample resets them
        with seeds."""
        if self.env is not None:
            self.env.close()
        self.env = make_team_vector_env(
            lambda: build_env(
                self.config.env,
                self.config.env_config,
                worker_index=self.worker_index or 0,
                num_workers=self.config.num_env_runners,
            ),
            self.config.num_envs_per_env_runner,
        )
        self.num_envs = self.env.num_envs
        modules: dict[str, list[str]] = defaultdict(list)
        for agent in self.env.agents:
            modules[self.config.policy_mapping_fn(agent, None)].append(agent)
        self._agents_of_module = dict(modules)
        # RLlib's smoothing window: the smoothing episodes, shared among the EnvRunners
        window = math.ceil(
            self.config.metrics_num_episodes_for_smoothing / (self.config.num_env_runners or 1)
        )
        self._episodes = EpisodeTracker(self.env.agents, self._agents_of_module, max(1, window))
        self._needs_initial_reset = True

    @override(EnvRunner)
    def make_module(self) -> None:
        """The actors only (`inference_only`): the learner-only critic is left out."""
        spec = self.config.get_multi_rl_module_spec(spaces=self.get_spaces(), inference_only=True)
        self.module = spec.build()
        self.module.foreach_module(lambda _, m: m.to(self._device).eval())

    @override(EnvRunner)
    def get_spaces(self) -> dict[str, Any]:
        """Per policy module (observation space, action space), and the env's agent spaces as
        Dicts (RLlib's `__env__` and `__env_single__` entries: one copy's spaces)."""
        if self.env is None:
            return self.spaces
        env_spaces = (
            gym.spaces.Dict(self.env.observation_spaces),
            gym.spaces.Dict(self.env.action_spaces),
        )
        return {
            INPUT_ENV_SPACES: env_spaces,
            INPUT_ENV_SINGLE_SPACES: env_spaces,
            **{
                module_id: (
                    self.env.observation_spaces[agents[0]],
                    self.env.action_spaces[agents[0]],
                )
                for module_id, agents in self._agents_of_module.items()
            },
        }

    @override(EnvRunner)
    def assert_healthy(self) -> None:
        assert self.env and self.module

    @override(EnvRunner)
    def stop(self) -> None:
        if self.env is not None:
            self.env.close()

    # --- state and checkpoints -------------------------------------------------------------

    @override(Checkpointable)
    def get_state(
        self,
        components: str | Collection[str] | None = None,
        *,
        not_components: str | Collection[str] | None = None,
        **kwargs,
    ) -> StateDict:
        """The lifetime env-step count, and the modules' weights with their sequence number."""
        state: StateDict = {NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_env_steps_sampled_lifetime}
        if self._check_component(COMPONENT_RL_MODULE, components, not_components):
            state[COMPONENT_RL_MODULE] = self.module.get_state(
                components=self._get_subcomponents(COMPONENT_RL_MODULE, components),
                not_components=self._get_subcomponents(COMPONENT_RL_MODULE, not_components),
                **kwargs,
            )
            state[WEIGHTS_SEQ_NO] = self._weights_seq_no
        return state

    @override(Checkpointable)
    def set_state(self, state: StateDict) -> None:
        """Takes new weights unless they are older than ours (RLlib's sequence-number rule)."""
        if COMPONENT_RL_MODULE in state:
            seq_no = state.get(WEIGHTS_SEQ_NO, 0)
            if seq_no == 0 or self._weights_seq_no < seq_no:
                module_state = state[COMPONENT_RL_MODULE]
                if isinstance(module_state, ray.ObjectRef):
                    module_state = ray.get(module_state)
                self.module.set_state(module_state)
            if seq_no > 0:
                self._weights_seq_no = seq_no
        if NUM_ENV_STEPS_SAMPLED_LIFETIME in state:
            self.num_env_steps_sampled_lifetime = state[NUM_ENV_STEPS_SAMPLED_LIFETIME]

    @override(Checkpointable)
    def get_ctor_args_and_kwargs(self) -> tuple[tuple, dict[str, Any]]:
        return (), {"config": self.config}

    @override(Checkpointable)
    def get_checkpointable_components(self) -> list[tuple[str, Checkpointable]]:
        return [(COMPONENT_RL_MODULE, self.module)]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: for batches of a few dozen rows intra-op threads only add
    synchronization, which stalls whenever other processes load the cores (Ray's EnvRunner
    actors run on one thread anyway; this matters for sampling in the driver)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
