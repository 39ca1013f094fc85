"""TRPO (Schulman et al. 2015): HATRPO with one agent on a single-agent Gymnasium env."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.annotations import override

from rllib_hatrpo.algorithms.hatrpo import HATRPO, HATRPOConfig
from rllib_hatrpo.envs.single_agent import SINGLE_AGENT_ENV


class TRPOConfig(HATRPOConfig):
    """TRPO settings: HATRPO's, for any Gymnasium env with a Box or Discrete action space.

    The env is wrapped as a one-agent team whose global state is the observation, so the critic
    is V(observation) and the sequential update reduces to one trust-region step.

    Example:
        config = TRPOConfig().environment("Pendulum-v1").training(kl_threshold=0.01)
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or TRPO)
        # The usual TRPO networks (64-64 tanh, no LayerNorm) suit low-dimensional observations.
        self.hidden_sizes = [64, 64]
        self.activation = "tanh"
        self.layer_norm = False

    @override(HATRPOConfig)
    def validate(self) -> None:
        """Wraps the Gymnasium env as a one-agent team (once), then validates as HATRPO."""
        if self.env is not None and self.env != SINGLE_AGENT_ENV:
            self.env_config = {"env": self.env, **dict(self.env_config or {})}
            self.env = SINGLE_AGENT_ENV
        super().validate()


class TRPO(HATRPO):
    """TRPO on RLlib's new API stack."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> TRPOConfig:
        return TRPOConfig()
