"""The agent step of the first-order methods, HAPPO and HAA2C: Adam epochs over minibatches of
their policy losses (`updates.policy_losses`)."""

from __future__ import annotations

import abc

import torch
import tree
from ray.rllib.core.learner.learner import Learner
from ray.rllib.utils.annotations import override

from rllib_hatrpo.algorithms.learner import HeterogeneousAgentLearner, ModuleBatch
from rllib_hatrpo.metrics import ENTROPY, GRAD_NORM, MEAN_KL, POLICY_LOSS, ProgressColumn
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID
from rllib_hatrpo.updates.data_parallel import all_reduce_grads, all_reduce_sum, shard_fraction
from rllib_hatrpo.updates.policy_losses import haa2c_loss, happo_loss


class FirstOrderLearner(HeterogeneousAgentLearner, abc.ABC):
    """Each agent has its own Adam; subclasses supply only `policy_loss`."""

    PROGRESS_COLUMNS = {
        MEAN_KL: ProgressColumn(MEAN_KL, "mean"),
        ENTROPY: ProgressColumn(ENTROPY, "mean"),
    }

    @override(Learner)
    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        if module_id == SHARED_CRITIC_ID:
            return super().configure_optimizers_for_module(module_id, config)
        self.register_adam(module_id, "actor", self.config.lr)

    @abc.abstractmethod
    def policy_loss(
        self, ratio: torch.Tensor, factor: torch.Tensor, advantages: torch.Tensor
    ) -> torch.Tensor:
        """The scalar loss to minimize on one minibatch (entropy bonus excluded)."""

    @override(HeterogeneousAgentLearner)
    def agent_step(
        self, module_id: str, batch: ModuleBatch, factor: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        cfg = self.config
        module = self.module[module_id]
        dist_cls = module.get_train_action_dist_cls()
        optimizer = self.get_optimizer(module_id, "actor")
        params = self.get_parameters(module)
        losses, entropies, grad_norms = [], [], []
        for _ in range(cfg.actor_epochs):
            perm = torch.randperm(len(advantages), device=advantages.device)
            # every minibatch takes the same rows of the agent's batch, of M and of A
            for idx in perm.chunk(cfg.actor_minibatches):
                obs = tree.map_structure(lambda x, idx=idx: x[idx], batch.obs)
                dist = dist_cls.from_logits(self._dist_inputs(module_id, obs))
                ratio = torch.exp(dist.logp(batch.actions[idx]) - batch.old_logp[idx])
                share = shard_fraction(len(idx), idx.device)  # this learner's share of the rows
                entropy = dist.entropy().mean() * share
                loss = self.policy_loss(ratio, factor[idx], advantages[idx]) * share
                optimizer.zero_grad()
                (loss - cfg.entropy_coeff * entropy).backward()  # entropy bonus
                all_reduce_grads(params)
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)))
                optimizer.step()
                losses.append(float(all_reduce_sum(loss.detach())))
                entropies.append(float(all_reduce_sum(entropy.detach())))
        with torch.no_grad():
            new_dist = dist_cls.from_logits(self._dist_inputs(module_id, batch.obs).double())
            old_dist = dist_cls.from_logits(batch.old_dist_inputs.double())
            mean_kl = float(all_reduce_sum(old_dist.kl(new_dist).mean() * batch.share))
        return {
            POLICY_LOSS: sum(losses) / len(losses),
            ENTROPY: sum(entropies) / len(entropies),
            GRAD_NORM: sum(grad_norms) / len(grad_norms),
            MEAN_KL: mean_kl,
        }


class HAPPOLearner(FirstOrderLearner):
    """PPO's clipped surrogate with M·A (Kuba et al. 2022)."""

    @override(FirstOrderLearner)
    def policy_loss(self, ratio, factor, advantages) -> torch.Tensor:
        return happo_loss(ratio, factor, advantages, self.config.clip_param)


class HAA2CLearner(FirstOrderLearner):
    """The unclipped policy gradient with M·A (HARL's HAA2C)."""

    @override(FirstOrderLearner)
    def policy_loss(self, ratio, factor, advantages) -> torch.Tensor:
        return haa2c_loss(ratio, factor, advantages)
