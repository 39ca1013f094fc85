"""HAPPO's and HAA2C's agent steps: the first-order step with their policy losses."""

from __future__ import annotations

import torch
from ray.rllib.utils.annotations import override

from rllib_hatrpo.first_order_learner import FirstOrderLearner
from rllib_hatrpo.policy_losses import haa2c_loss, happo_loss


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
