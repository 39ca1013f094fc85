"""HATRPO: heterogeneous-agent trust-region policy optimisation (Kuba et al. 2022)."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.utils.annotations import override
from typing_extensions import Self

from rllib_hatrpo.algorithms.algorithm import HAAlgorithm
from rllib_hatrpo.algorithms.config import HAConfig
from rllib_hatrpo.algorithms.settings import Rule


class HATRPOConfig(HAConfig):
    """HATRPO settings; defaults are HARL's tuned values for MaMuJoCo.

    Example:
        config = (
            HATRPOConfig()
            .environment("mamujoco", env_config={"scenario": "HalfCheetah", "agent_conf": "2x3"})
            .env_runners(num_env_runners=1)
            .training(kl_threshold=0.01)
        )
        algo = config.build_algo()
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or HATRPO)
        self.kl_threshold = 0.01
        self.cg_iters = 10
        self.cg_damping = 0.1
        self.line_search_steps = 10
        self.backtrack_coeff = 0.8
        self.accept_ratio = 0.5
        self.fisher_fraction = 1.0

    @override(HAConfig)
    def training(
        self,
        *,
        kl_threshold: float = NotProvided,
        cg_iters: int = NotProvided,
        cg_damping: float = NotProvided,
        line_search_steps: int = NotProvided,
        backtrack_coeff: float = NotProvided,
        accept_ratio: float = NotProvided,
        fisher_fraction: float = NotProvided,
        **kwargs,
    ) -> Self:
        """Trust-region settings; other kwargs go to `HAConfig.training`.

        Args:
            kl_threshold: δ, the largest mean KL(π_old ‖ π_new) an agent's step may take.
            cg_iters: Conjugate-gradient iterations for H⁻¹g.
            cg_damping: Damping λ added to the Fisher-vector product, (H + λI)v.
            line_search_steps: Backtracking tries before the step is rejected.
            backtrack_coeff: Step fraction multiplier per try, in (0, 1).
            accept_ratio: Minimum improvement / expected improvement to accept, in [0, 1].
            fisher_fraction: Share of each agent's rows, drawn afresh at every step, on which
                the Fisher-vector products are computed, in (0, 1]. 1 (HARL) uses all rows;
                0.1 (Schulman et al. 2015) made HalfCheetah 2x3's learner update 3.4× faster.
        """
        super().training(**kwargs)
        return self.set_provided(
            kl_threshold=kl_threshold,
            cg_iters=cg_iters,
            cg_damping=cg_damping,
            line_search_steps=line_search_steps,
            backtrack_coeff=backtrack_coeff,
            accept_ratio=accept_ratio,
            fisher_fraction=fisher_fraction,
        )

    @override(HAConfig)
    def setting_rules(self) -> dict[str, Rule]:
        return {
            **super().setting_rules(),
            "kl_threshold": Rule(lambda v: v > 0, "a number > 0"),
            "cg_iters": Rule(lambda v: v >= 1, "an integer >= 1"),
            "cg_damping": Rule(lambda v: v >= 0, "a number >= 0"),
            "line_search_steps": Rule(lambda v: v >= 1, "an integer >= 1"),
            "backtrack_coeff": Rule(lambda v: 0 < v < 1, "a number in the open interval (0, 1)"),
            "accept_ratio": Rule(lambda v: 0 <= v <= 1, "a number in the closed interval [0, 1]"),
            "fisher_fraction": Rule(
                lambda v: 0 < v <= 1, "a number in the half-open interval (0, 1]"
            ),
        }

    @override(HAConfig)
    def ignored_settings(self) -> dict[str, str]:
        return {
            **super().ignored_settings(),
            "lr": "the trust region (kl_threshold) sets the actors' step size and critic_lr the "
            "critic's",
        }

    @override(HAConfig)
    def get_default_learner_class(self):
        from rllib_hatrpo.algorithms.hatrpo_learner import HATRPOLearner

        return HATRPOLearner


class HATRPO(HAAlgorithm):
    """HATRPO on RLlib's new API stack."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> HATRPOConfig:
        return HATRPOConfig()
