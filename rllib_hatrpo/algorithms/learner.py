"""The centralized-value learner: advantages from the shared critic, the sequential agent
update, then the critic fit. Subclasses contribute only `agent_step`."""

from __future__ import annotations

import abc
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import tree
from ray.rllib.core import ALL_MODULES
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import NUM_ENV_STEPS_TRAINED, NUM_ENV_STEPS_TRAINED_LIFETIME

from rllib_hatrpo.envs.parallel_state_env import GLOBAL_STATE_KEY
from rllib_hatrpo.metrics import CRITIC_LOSS, EXPLAINED_VARIANCE, ProgressColumn
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID, value_loss
from rllib_hatrpo.sampling.team_batch import TEAM_BATCH, TeamBatch
from rllib_hatrpo.sampling.team_fragment import concat_rows
from rllib_hatrpo.updates.advantages import compute_gae
from rllib_hatrpo.updates.data_parallel import (
    all_reduce_grads,
    all_reduce_sum,
    global_mean,
    global_var,
    shard_fraction,
)
from rllib_hatrpo.updates.sequential_update import sequential_update


@dataclass
class ModuleBatch:
    """One policy module's rows: its agents' rows stacked agent after agent (k·N rows).

    `share` is this learner's fraction of the rows on all data-parallel learners: a mean over
    the rows here times `share` is this learner's share of the whole batch's mean.
    """

    obs: Any  # a tensor, or a dict of tensors when an action mask rides along
    actions: torch.Tensor
    old_logp: torch.Tensor
    old_dist_inputs: torch.Tensor
    num_agents: int
    share: float


class HeterogeneousAgentLearner(TorchLearner, abc.ABC):
    """Runs one iteration of a heterogeneous-agent algorithm on the given episodes."""

    PROGRESS_COLUMNS: ClassVar[dict[str, ProgressColumn]] = {}
    """The progress.csv columns (and progress line) made of what `agent_step` reports."""

    @override(Learner)
    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        if module_id == SHARED_CRITIC_ID:
            self.register_adam(module_id, "critic", self.config.critic_lr)

    def register_adam(self, module_id: str, name: str, lr: Any) -> None:
        """Registers HARL's Adam (eps 1e-5) for a module; `lr` may be an RLlib schedule."""
        params = self.get_parameters(self.module[module_id])
        self.register_optimizer(
            module_id=module_id,
            optimizer_name=name,
            optimizer=torch.optim.Adam(params, eps=1e-5),
            params=params,
            lr_or_lr_schedule=lr,
        )

    @override(TorchLearner)
    def _make_modules_ddp_if_necessary(self) -> None:
        """No DDP wrapping: `data_parallel` sums shares across learners explicitly (the
        trust-region step's double backward and line search happen outside `backward()`)."""

    @override(Learner)
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        """Unused: the sequential update replaces RLlib's per-module loss path."""
        raise NotImplementedError(
            f"{type(self).__name__} updates agents sequentially in `update()`; it has no "
            "per-module loss."
        )

    @abc.abstractmethod
    def agent_step(
        self, module_id: str, batch: ModuleBatch, factor: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        """Improves one policy module on its rows; returns diagnostics.

        `factor` is M (the earlier agents' joint ratio, a constant) and `advantages` the
        standardized team advantage, both with one entry per row of `batch`. With several
        learners, every learner must take the identical step: losses enter as shares
        (`batch.share`), and gradients and reported values are summed (`data_parallel`).
        """

    @override(Learner)
    def update(
        self,
        *,
        training_data: TrainingData | None = None,
        episodes: list | None = None,
        timesteps: dict[str, Any] | None = None,
        agent_order: list[str] | None = None,
        **kwargs,
    ) -> dict[str, Any]:
        """One iteration: GAE from the shared critic, agents in `agent_order`, critic fit."""
        self._check_is_built()
        if training_data is None:
            training_data = TrainingData(episodes=episodes)
        training_data.solve_refs()
        team: TeamBatch = self._learner_connector(
            rl_module=self.module,
            batch={},
            episodes=training_data.episodes,
            shared_data={},
            metrics=self.metrics,
        )[TEAM_BATCH]

        critic = self.module[SHARED_CRITIC_ID]
        states = torch.as_tensor(team.states, device=self._device)
        lengths = team.fragment_lengths
        row_of_step = _step_rows(lengths)  # rows of `states` that are env steps (not bootstrap)
        with torch.no_grad():
            norm_values = critic.compute_values({GLOBAL_STATE_KEY: states})
            values = critic.value_normalizer.denormalize(norm_values.double())
        advantages, targets = compute_gae(
            team.rewards,
            values.cpu().numpy(),
            lengths,
            team.terminated,
            self.config.gamma,
            self.config.lambda_,
            drop_last=[
                truncated and self.config.truncation_bootstrap == "drop_last"
                for truncated in team.truncated
            ],
        )
        advantages = torch.as_tensor(advantages, device=self._device)
        # advantages standardized over the batch (of all learners): (A − mean) / std
        advantages = (advantages - global_mean(advantages)) / (global_var(advantages).sqrt() + 1e-5)

        num_rows = len(advantages)
        module_batches = self._module_batches(team, shard_fraction(num_rows, self._device))
        # default: the modules in the agents' order (as `config.module_ids()`, `fixed_order`)
        order = agent_order if agent_order is not None else list(module_batches)

        def step(module_id: Hashable, factor: torch.Tensor) -> dict[str, float]:
            mb = module_batches[module_id]
            rows_factor = factor.to(advantages.device).float().repeat(mb.num_agents)
            return self.agent_step(
                module_id, mb, rows_factor, advantages.float().repeat(mb.num_agents)
            )

        def log_ratio(module_id: Hashable) -> torch.Tensor:
            mb = module_batches[module_id]
            logp = self._logp(module_id, mb.obs, mb.actions)
            # joint ratio of the module's agents on each env step: Π_agents π_new/π_old
            return (logp - mb.old_logp).reshape(mb.num_agents, num_rows).sum(0).cpu()

        results, _ = sequential_update(order, num_rows, step, log_ratio)
        for module_id, stats in results.items():
            for key, value in stats.items():
                self.metrics.log_value((module_id, key), float(value), window=1)

        self._fit_critic(
            states[row_of_step], norm_values[row_of_step], targets, values[row_of_step]
        )
        # RLlib's hook: steps the learning-rate schedules of every registered optimizer
        self.after_gradient_based_update(timesteps=timesteps or {})
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED), num_rows, reduce="sum")
        self.metrics.log_value(
            (ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), num_rows, reduce="lifetime_sum"
        )
        return self.metrics.reduce()

    def _module_batches(self, team: TeamBatch, share: float) -> dict[str, ModuleBatch]:
        """Groups agents by the policy module they map to and records π_old on their rows."""
        groups: dict[str, list[str]] = defaultdict(list)
        for agent_id in team.actions:
            groups[self.config.policy_mapping_fn(agent_id, None)].append(agent_id)
        batches = {}
        for module_id, agent_ids in groups.items():
            obs = tree.map_structure(
                lambda x: torch.as_tensor(x, device=self._device),
                concat_rows([team.obs[a] for a in agent_ids]),
            )
            actions = torch.as_tensor(
                np.concatenate([team.actions[a] for a in agent_ids]),
                device=self._device,
            )
            with torch.no_grad():
                dist_inputs = self._dist_inputs(module_id, obs)
                dist = self.module[module_id].get_train_action_dist_cls().from_logits(dist_inputs)
                batches[module_id] = ModuleBatch(
                    obs, actions, dist.logp(actions), dist_inputs, len(agent_ids), share
                )
        return batches

    def _dist_inputs(self, module_id: str, obs: torch.Tensor) -> torch.Tensor:
        return self.module[module_id].forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]

    def _logp(self, module_id: str, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        dist_cls = self.module[module_id].get_train_action_dist_cls()
        return dist_cls.from_logits(self._dist_inputs(module_id, obs)).logp(actions)

    def _fit_critic(
        self,
        states: torch.Tensor,
        old_norm_values: torch.Tensor,
        targets: np.ndarray,
        old_values: torch.Tensor,
    ) -> None:
        """Fits V(s) to the GAE targets in normalized units (Huber loss, value clipping).

        The value normalizer takes in the targets once, before the first epoch, or (with
        `value_norm_per_minibatch`, as HARL) each minibatch's targets just before its loss.
        """
        critic = self.module[SHARED_CRITIC_ID]
        normalizer = critic.value_normalizer
        optimizer = self.get_optimizer(SHARED_CRITIC_ID, "critic")
        params = list(critic.parameters())
        targets_t = torch.as_tensor(targets, device=self._device)
        per_minibatch = self.config.use_value_norm and self.config.value_norm_per_minibatch
        if self.config.use_value_norm and not per_minibatch:
            normalizer.update(targets_t)
            norm_targets = normalizer.normalize(targets_t).float()
        else:
            norm_targets = targets_t.float()
        n = len(targets_t)
        num_minibatches = self.config.critic_minibatches
        losses = []
        for _ in range(self.config.critic_epochs):
            perm = torch.randperm(n, device=self._device)
            for idx in perm.chunk(num_minibatches):
                if per_minibatch:
                    normalizer.update(targets_t[idx])  # the minibatch's rows on all learners
                    minibatch_targets = normalizer.normalize(targets_t[idx]).float()
                else:
                    minibatch_targets = norm_targets[idx]
                pred = critic.compute_values({GLOBAL_STATE_KEY: states[idx]})
                loss = value_loss(
                    pred,
                    old_norm_values[idx],
                    minibatch_targets,
                    value_clip=self.config.value_clip,
                    huber_delta=self.config.huber_delta,
                ) * shard_fraction(len(idx), self._device)  # this learner's share of the loss
                optimizer.zero_grad()
                loss.backward()
                all_reduce_grads(params)
                torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
                optimizer.step()
                losses.append(float(all_reduce_sum(loss.detach())))
        # explained variance of the pre-fit values: 1 − Var(R − V) / Var(R)
        residual_var = global_var(targets_t - old_values)
        explained = 1.0 - float(residual_var / global_var(targets_t).clamp(min=1e-8))
        self.metrics.log_value((SHARED_CRITIC_ID, CRITIC_LOSS), float(np.mean(losses)), window=1)
        self.metrics.log_value((SHARED_CRITIC_ID, EXPLAINED_VARIANCE), explained, window=1)


def _step_rows(fragment_lengths: list[int]) -> torch.Tensor:
    """Indices of the per-observation rows that belong to env steps (drops bootstrap rows)."""
    rows, offset = [], 0
    for n in fragment_lengths:
        rows.append(torch.arange(offset, offset + n))
        offset += n + 1
    return torch.cat(rows)
