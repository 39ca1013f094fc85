"""HAPPO and HAA2C: the sequential update with first-order agent steps."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.utils.annotations import override
from typing_extensions import Self

from rllib_hatrpo.algorithms.algorithm import HAAlgorithm
from rllib_hatrpo.algorithms.config import HAConfig
from rllib_hatrpo.algorithms.settings import Rule, minibatch_rule, rate_rule


class FirstOrderConfig(HAConfig):
    """Settings of the methods whose agent step is Adam on a policy loss (HAPPO, HAA2C)."""

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        self.lr = 5e-4
        self.actor_minibatches = 1
        self.entropy_coeff = 0.01

    @override(HAConfig)
    def training(
        self,
        *,
        actor_minibatches: int = NotProvided,
        entropy_coeff: float = NotProvided,
        **kwargs,
    ) -> Self:
        """Actor optimisation settings; other kwargs go to `HAConfig.training`.

        Args:
            actor_minibatches: Minibatches per actor epoch; each takes the same rows of the
                agent's batch and of M.
            entropy_coeff: Weight of the entropy bonus.

        The actors' Adam learning rate is RLlib's `lr`: a number, or a schedule such as
        `[[0, 5e-4], [10_000_000, 0.0]]` for HARL's linear decay.
        """
        super().training(**kwargs)
        return self.set_provided(actor_minibatches=actor_minibatches, entropy_coeff=entropy_coeff)

    @property
    def actor_epochs(self) -> int:
        """Passes over the agent's batch in its step (each method names its own field)."""
        raise NotImplementedError

    @override(HAConfig)
    def setting_rules(self) -> dict[str, Rule]:
        return {
            **super().setting_rules(),
            "actor_minibatches": minibatch_rule(self.train_batch_size_per_learner),
            "entropy_coeff": Rule(lambda v: v >= 0, "a number >= 0"),
            "lr": rate_rule(),
        }


class HAPPOConfig(FirstOrderConfig):
    """HAPPO settings; defaults are HARL's MaMuJoCo values (clip 0.2, 5 epochs, lr 5e-4).

    Example:
        config = HAPPOConfig().environment("simple_spread_v3").training(clip_param=0.2)
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or HAPPO)
        self.clip_param = 0.2
        self.ppo_epochs = 5

    @override(FirstOrderConfig)
    def training(
        self, *, clip_param: float = NotProvided, ppo_epochs: int = NotProvided, **kwargs
    ) -> Self:
        """PPO settings; other kwargs go to `FirstOrderConfig.training`.

        Args:
            clip_param: ε of the ratio clip, > 0.
            ppo_epochs: Passes over each agent's batch, >= 1.
        """
        super().training(**kwargs)
        return self.set_provided(clip_param=clip_param, ppo_epochs=ppo_epochs)

    @property
    @override(FirstOrderConfig)
    def actor_epochs(self) -> int:
        return self.ppo_epochs

    @override(FirstOrderConfig)
    def setting_rules(self) -> dict[str, Rule]:
        return {
            **super().setting_rules(),
            "clip_param": Rule(lambda v: v > 0, "a number > 0"),
            "ppo_epochs": Rule(lambda v: v >= 1, "an integer >= 1"),
        }

    @override(FirstOrderConfig)
    def get_default_learner_class(self):
        from rllib_hatrpo.algorithms.first_order_learner import HAPPOLearner

        return HAPPOLearner


class HAA2CConfig(FirstOrderConfig):
    """HAA2C settings (HARL's defaults: 5 epochs, 1 minibatch, lr 5e-4)."""

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or HAA2C)
        self.a2c_epochs = 5

    @override(FirstOrderConfig)
    def training(self, *, a2c_epochs: int = NotProvided, **kwargs) -> Self:
        """A2C settings; other kwargs go to `FirstOrderConfig.training`.

        Args:
            a2c_epochs: Passes over each agent's batch, >= 1.
        """
        super().training(**kwargs)
        return self.set_provided(a2c_epochs=a2c_epochs)

    @property
    @override(FirstOrderConfig)
    def actor_epochs(self) -> int:
        return self.a2c_epochs

    @override(FirstOrderConfig)
    def setting_rules(self) -> dict[str, Rule]:
        return {**super().setting_rules(), "a2c_epochs": Rule(lambda v: v >= 1, "an integer >= 1")}

    @override(FirstOrderConfig)
    def get_default_learner_class(self):
        from rllib_hatrpo.algorithms.first_order_learner import HAA2CLearner

        return HAA2CLearner


class HAPPO(HAAlgorithm):
    """HAPPO on RLlib's new API stack."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> HAPPOConfig:
        return HAPPOConfig()


class HAA2C(HAAlgorithm):
    """HAA2C on RLlib's new API stack."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> HAA2CConfig:
        return HAA2CConfig()
