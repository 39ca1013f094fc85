"""HATRPO's agent step: a trust-region step on the surrogate E[ratio · M · A]."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import tree
from ray.rllib.utils.annotations import override

from rllib_hatrpo.algorithms.learner import HeterogeneousAgentLearner, ModuleBatch
from rllib_hatrpo.metrics import (
    EXPECTED_IMPROVEMENT,
    LINE_SEARCH_STEPS,
    MEAN_KL,
    STEP_ACCEPTED,
    STEPS_ACCEPTED,
    SURROGATE_IMPROVEMENT,
    ProgressColumn,
)
from rllib_hatrpo.updates.trust_region import Linearized, trust_region_step


class HATRPOLearner(HeterogeneousAgentLearner):
    """Steps each agent with conjugate gradient + line search inside the KL ball δ."""

    PROGRESS_COLUMNS = {
        MEAN_KL: ProgressColumn(MEAN_KL, "mean"),
        STEPS_ACCEPTED: ProgressColumn(STEP_ACCEPTED, "count"),
    }

    @override(HeterogeneousAgentLearner)
    def agent_step(
        self, module_id: str, batch: ModuleBatch, factor: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        module = self.module[module_id]
        weighted_advantages = factor * advantages
        dist_cls = module.get_train_action_dist_cls()

        def surrogate(dist_inputs: torch.Tensor) -> torch.Tensor:
            logp = dist_cls.from_logits(dist_inputs).logp(batch.actions)
            # HATRPO surrogate: E[π_new/π_old · M · A] (Kuba et al. 2022, eq. 12), this share
            return (torch.exp(logp - batch.old_logp) * weighted_advantages).mean() * batch.share

        def mean_kl_from(old_inputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            old_dist = dist_cls.from_logits(old_inputs.double())

            def mean_kl(dist_inputs: torch.Tensor) -> torch.Tensor:
                new_dist = dist_cls.from_logits(dist_inputs.double())
                # mean KL(π_old ‖ π_new) in float64, this learner's share
                return old_dist.kl(new_dist).mean() * batch.share

            return mean_kl

        cfg = self.config
        fisher_subsample = None
        if cfg.fisher_fraction < 1.0:
            num_rows = len(batch.actions)
            rows = torch.randperm(num_rows, device=self._device)
            rows = rows[: math.ceil(cfg.fisher_fraction * num_rows)]
            obs_rows = tree.map_structure(lambda x: x[rows], batch.obs)
            fisher_subsample = (
                lambda: self._linearize(module_id, obs_rows),
                mean_kl_from(batch.old_dist_inputs[rows]),
            )
        stats = trust_region_step(
            list(module.parameters()),
            lambda: self._dist_inputs(module_id, batch.obs),
            surrogate,
            mean_kl_from(batch.old_dist_inputs),
            max_kl=cfg.kl_threshold,
            cg_iters=cfg.cg_iters,
            cg_damping=cfg.cg_damping,
            line_search_steps=cfg.line_search_steps,
            backtrack_coeff=cfg.backtrack_coeff,
            accept_ratio=cfg.accept_ratio,
            linearize_fn=lambda: self._linearize(module_id, batch.obs),
            fisher_subsample=fisher_subsample,
        )
        return {
            MEAN_KL: stats.mean_kl,
            SURROGATE_IMPROVEMENT: stats.surrogate_improvement,
            EXPECTED_IMPROVEMENT: stats.expected_improvement,
            LINE_SEARCH_STEPS: stats.line_search_steps,
            STEP_ACCEPTED: stats.step_accepted,
        }

    def _linearize(self, module_id: str, obs: torch.Tensor) -> Linearized:
        """The module's distribution inputs on `obs`, with their forward-mode product when the
        module offers one (`ActorRLModule.linearize`; a custom RLModule need not)."""
        module = self.module[module_id]
        if hasattr(module, "linearize"):
            return module.linearize(obs)
        return self._dist_inputs(module_id, obs), None
