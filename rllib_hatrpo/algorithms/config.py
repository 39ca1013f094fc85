"""Settings shared by every heterogeneous-agent algorithm (HATRPO, and later HAPPO, ...)."""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.policy import PolicySpec
from ray.rllib.utils.annotations import override
from typing_extensions import Self

from rllib_hatrpo.algorithms.settings import (
    IGNORED_SETTINGS,
    ConfigError,
    Rule,
    any_value,
    check_field,
    count_or_one,
    invalid,
    minibatch_rule,
    rate_rule,
)
from rllib_hatrpo.modules.actor import ActorRLModule
from rllib_hatrpo.modules.networks import ACTIVATIONS, NETWORK_DEFAULTS
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID, SharedCriticRLModule
from rllib_hatrpo.sampling.env_probe import TeamSpaces, probe_env
from rllib_hatrpo.sampling.team_batch import TeamBatchBuilder
from rllib_hatrpo.sampling.team_env_runner import TeamEnvRunner, check_team_env_runner_config
from rllib_hatrpo.schema import builder_fields, conforms, is_search_space

SHARED_POLICY_ID = "shared_policy"

TRUNCATION_BOOTSTRAPS: tuple[str, ...] = ("final_state", "drop_last")
"""What the advantage of a time-limit truncation bootstraps from: V of the state after the last
step (ours), or, dropping the last transition, V of the last step's own state (HARL's)."""

FAULT_TOLERANCE_DEFAULTS: dict[str, Any] = {
    # A lost EnvRunner (crash, preempted node) is restarted by Ray with the same index and the
    # learner's weights; training goes on with the healthy ones meanwhile.
    "restart_failed_env_runners": True,
    # Restarts per EnvRunner actor (Ray's max_restarts): enough for spot preemptions over a
    # long run, few enough that an env that crashes on every step stops the run.
    "max_num_env_runner_restarts": 100,
    # Pause of an EnvRunner whose env raised, before its process exits and Ray restarts it
    # (RLlib: 60 s, as long as a whole sample_timeout_s).
    "delay_between_env_runner_restarts_s": 5.0,
    # Each ping of a restarting EnvRunner blocks the driver this long at most.
    "env_runner_health_probe_timeout_s": 10.0,
}
"""`AlgorithmConfig.fault_tolerance()` settings our configs default to (RLlib's otherwise)."""


def module_per_agent(agent_id: str, episode: Any = None, **kwargs) -> str:
    """Policy mapping without parameter sharing: each agent has its own module."""
    return agent_id


def one_shared_module(agent_id: str, episode: Any = None, **kwargs) -> str:
    """Policy mapping with parameter sharing: every agent uses one module."""
    return SHARED_POLICY_ID


class HAConfig(AlgorithmConfig):
    """Config base for algorithms with a shared critic and a sequential agent update."""

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        # HARL's MaMuJoCo settings: 20 envs × 200-step fragments = 4,000 env steps per iteration.
        self.num_envs_per_env_runner = 20
        self.train_batch_size_per_learner = 4000
        # Fragments sized from the batch (as PPO does): runners × envs × fragment = the batch.
        self.rollout_fragment_length = "auto"
        self.gamma = 0.99
        self.lambda_ = 0.95
        self.critic_lr = 5e-4
        self.critic_epochs = 5
        self.critic_minibatches = 1
        self.value_clip = 0.2
        self.huber_delta = 10.0
        self.max_grad_norm = 10.0
        self.use_value_norm = True
        self.value_norm_per_minibatch = False
        self.truncation_bootstrap = "final_state"
        self.fixed_order = False
        self.share_policy = False
        self.hidden_sizes = list(NETWORK_DEFAULTS["hidden_sizes"])
        self.activation = NETWORK_DEFAULTS["activation"]
        self.layer_norm = NETWORK_DEFAULTS["layer_norm"]
        # The learner builds its own row-aligned batch (TeamBatchBuilder) instead of RLlib's
        # per-module batches.
        self.add_default_connectors_to_learner_pipeline = False
        # Vectorized team envs and one batched forward pass per module and step; the learner
        # takes its TeamFragments (RLlib's MultiAgentEnvRunner is not an option).
        self.env_runner_cls = TeamEnvRunner
        # Evaluation EnvRunners (`.evaluation(evaluation_interval=...)`) act with each policy's
        # mean action, as HARL evaluates; `evaluation_config={"explore": True}` overrides it.
        self.evaluation_config = {"explore": False}
        for name, value in FAULT_TOLERANCE_DEFAULTS.items():
            setattr(self, name, value)
        # Longest wait, with no EnvRunner healthy, for Ray to restart one (then an error).
        self.env_runner_recovery_timeout_s = 1800.0
        # min_sample_timesteps_per_iteration follows the batch size unless the user sets it
        # (see validate()), so an iteration whose sampling lost every EnvRunner samples again.
        self._auto_min_sample_timesteps = True
        self._team_spaces: TeamSpaces | None = None

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        lambda_: float = NotProvided,
        critic_lr: float | list[list[float]] = NotProvided,
        critic_epochs: int = NotProvided,
        critic_minibatches: int = NotProvided,
        value_clip: float = NotProvided,
        huber_delta: float = NotProvided,
        max_grad_norm: float = NotProvided,
        use_value_norm: bool = NotProvided,
        value_norm_per_minibatch: bool = NotProvided,
        truncation_bootstrap: str = NotProvided,
        fixed_order: bool = NotProvided,
        share_policy: bool = NotProvided,
        hidden_sizes: list[int] = NotProvided,
        activation: str = NotProvided,
        layer_norm: bool = NotProvided,
        **kwargs,
    ) -> Self:
        """Shared-critic and sequential-update settings; other kwargs go to RLlib's `training()`.

        Args:
            lambda_: GAE λ.
            critic_lr: Adam learning rate of the shared critic: a number, or an RLlib
                schedule such as `[[0, 5e-4], [10_000_000, 0.0]]` (HARL's linear decay,
                which HARL applies to the critic together with the actors).
            critic_epochs: Passes over the batch when fitting the critic.
            critic_minibatches: Minibatches per critic epoch.
            value_clip: Value-clipping range ε (normalized units).
            huber_delta: Huber loss δ of the critic.
            max_grad_norm: Gradient-norm clip for every gradient step.
            use_value_norm: Normalize value targets with running statistics.
            value_norm_per_minibatch: HARL's normalizer update: the statistics take in each
                critic minibatch of every epoch just before its loss (and normalize its
                targets). False: once per iteration, on all the batch's targets.
            truncation_bootstrap: At an episode's time-limit truncation, "final_state": the
                last step bootstraps from V(state after it); "drop_last" (HARL's): the last
                transition is dropped, its advantage 0 and its value target V(s_last), and
                the earlier steps bootstrap from V(s_last).
            fixed_order: Update agents in the order 0..n-1 instead of a random permutation.
            share_policy: One policy module for all agents (their spaces must be equal).
            hidden_sizes: Hidden layer sizes of actors and critic.
            activation: "relu", "tanh" or "leaky_relu".
            layer_norm: HARL's input and hidden LayerNorms in actors and critic.
        """
        super().training(**kwargs)
        return self.set_provided(
            lambda_=lambda_,
            critic_lr=critic_lr,
            critic_epochs=critic_epochs,
            critic_minibatches=critic_minibatches,
            value_clip=value_clip,
            huber_delta=huber_delta,
            max_grad_norm=max_grad_norm,
            use_value_norm=use_value_norm,
            value_norm_per_minibatch=value_norm_per_minibatch,
            truncation_bootstrap=truncation_bootstrap,
            fixed_order=fixed_order,
            share_policy=share_policy,
            hidden_sizes=hidden_sizes,
            activation=activation,
            layer_norm=layer_norm,
        )

    @override(AlgorithmConfig)
    def fault_tolerance(
        self, *, env_runner_recovery_timeout_s: float = NotProvided, **kwargs
    ) -> Self:
        """RLlib's fault-tolerance settings (our defaults: `FAULT_TOLERANCE_DEFAULTS`), plus:

        Args:
            env_runner_recovery_timeout_s: Longest time an iteration waits, while no remote
                EnvRunner is healthy, for Ray to restart one before it raises
                `EnvRunnersLostError`. It raises at once when no node of the cluster can
                host an EnvRunner any more (e.g. the only `sampler` node is gone).
        """
        super().fault_tolerance(**kwargs)
        return self.set_provided(env_runner_recovery_timeout_s=env_runner_recovery_timeout_s)

    @override(AlgorithmConfig)
    def reporting(self, *, min_sample_timesteps_per_iteration: int = NotProvided, **kwargs) -> Self:
        """RLlib's `reporting()`; setting `min_sample_timesteps_per_iteration` turns off our
        default for it (the train batch size, see `validate`)."""
        if min_sample_timesteps_per_iteration is not NotProvided:
            self._auto_min_sample_timesteps = False
            kwargs["min_sample_timesteps_per_iteration"] = min_sample_timesteps_per_iteration
        return super().reporting(**kwargs)

    def set_provided(self, **fields: Any) -> Self:
        """Sets the fields a builder call actually provided (RLlib's NotProvided convention)."""
        for name, value in fields.items():
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def team_spaces(self) -> TeamSpaces:
        """The env's agents and spaces, probed once on the driver."""
        if self._team_spaces is None:
            self._team_spaces = probe_env(self.env, self.env_config)
        return self._team_spaces

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Checks every setting (all problems in one `ConfigError`), then probes the env and
        sets up one module per agent."""
        problems = self.setting_problems()
        if problems:
            raise ConfigError(problems)
        if self._auto_min_sample_timesteps:
            # RLlib repeats `training_step` within an iteration until this many env steps were
            # sampled: one batch normally, and a second try when sampling lost every EnvRunner
            # (the iteration then waits for a restarted one instead of ending untrained).
            self.min_sample_timesteps_per_iteration = self.total_train_batch_size
        if self.env is not None:
            self._setup_team_modules(self.team_spaces())
        super().validate()

    def setting_problems(self) -> list[str]:
        """One message per invalid setting: its name, value, type and what is allowed.

        Each rule of :meth:`setting_rules` checks the type (the rule's, else the hint of our own
        builder keyword) before the range; Tune search spaces are skipped (their trial's values
        are checked when the trial builds its algorithm). RLlib settings that our algorithms
        ignore must be left at their defaults (:data:`IGNORED_SETTINGS`).
        """
        problems = []
        try:
            check_team_env_runner_config(self)
        except ValueError as err:
            problems.append(str(err))
        hints = {
            **builder_fields(type(self), "fault_tolerance", own_only=True),
            **builder_fields(type(self), "training", own_only=True),
        }
        for name, rule in self.setting_rules().items():
            value = getattr(self, name)
            if is_search_space(value):
                continue
            hint = rule.hint if rule.hint is not None else hints.get(name, Any)
            try:
                ok = conforms(value, hint) and rule.check(value)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                problems.append(invalid(name, value, rule.allowed))
        defaults = type(self)()
        for name, reason in self.ignored_settings().items():
            value, default = getattr(self, name), getattr(defaults, name)
            if isinstance(value, dict) and isinstance(default, dict):  # RLlib merges `model`
                value = {k: v for k, v in value.items() if k not in default or default[k] != v}
            if value != default and value != {}:
                problems.append(
                    f"{name}={value!r} is not used by {self.algo_class.__name__}: {reason}. "
                    "Leave it unset."
                )
        return problems

    def setting_rules(self) -> dict[str, Rule]:
        """What each setting must be; subclasses add theirs."""
        rows = self.train_batch_size_per_learner
        env_copies = count_or_one(self.num_envs_per_env_runner) * count_or_one(self.num_env_runners)
        return {
            "gamma": Rule(lambda v: 0 <= v <= 1, "a number in [0, 1]", float),
            "lambda_": Rule(lambda v: 0 <= v <= 1, "a number in [0, 1]"),
            "critic_lr": rate_rule(),
            "critic_epochs": Rule(lambda v: v >= 1, "an integer >= 1"),
            "critic_minibatches": minibatch_rule(rows),
            "value_clip": Rule(lambda v: v > 0, "a number > 0"),
            "huber_delta": Rule(lambda v: v > 0, "a number > 0"),
            "max_grad_norm": Rule(lambda v: v > 0, "a number > 0"),
            "use_value_norm": Rule(any_value, "true or false"),
            "value_norm_per_minibatch": Rule(any_value, "true or false"),
            "truncation_bootstrap": Rule(
                lambda v: v in TRUNCATION_BOOTSTRAPS, f"one of {', '.join(TRUNCATION_BOOTSTRAPS)}"
            ),
            "fixed_order": Rule(any_value, "true or false"),
            "share_policy": Rule(any_value, "true or false"),
            "layer_norm": Rule(any_value, "true or false"),
            "hidden_sizes": Rule(
                lambda v: len(v) >= 1 and all(h >= 1 for h in v),
                "a non-empty list of positive integers, e.g. [128, 128, 128]",
            ),
            "activation": Rule(lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
            "env_runner_recovery_timeout_s": Rule(lambda v: v > 0, "a number > 0 (seconds)"),
            "train_batch_size_per_learner": Rule(
                lambda v: v >= 1, "an integer >= 1 (env steps per iteration and learner)", int
            ),
            "num_env_runners": Rule(
                lambda v: v >= 0, "an integer >= 0 (0: sample in the driver's process)", int
            ),
            "num_envs_per_env_runner": Rule(lambda v: v >= 1, "an integer >= 1", int),
            "rollout_fragment_length": Rule(
                lambda v: v == "auto" or v >= 1, "'auto' or an integer >= 1", int | str
            ),
            "evaluation_num_env_runners": Rule(lambda v: v >= 0, "an integer >= 0", int),
            "num_learners": Rule(
                lambda v: 0 <= v <= env_copies,
                f"an integer in [0, {env_copies}], at most the number of env copies "
                "sampling (num_envs_per_env_runner × num_env_runners): each learner takes "
                "whole episode fragments",
                int,
            ),
        }

    def ignored_settings(self) -> dict[str, str]:
        """RLlib `training()` settings this algorithm does not use, and what to set instead."""
        return dict(IGNORED_SETTINGS)

    def _setup_team_modules(self, spaces: TeamSpaces) -> None:
        """One policy module per agent (or one shared), unless the user set policies."""
        if set(self.policies) != {"default_policy"}:
            return
        if self.share_policy:
            first = spaces.agents[0]
            for agent in spaces.agents[1:]:
                same = (
                    spaces.observation_spaces[agent] == spaces.observation_spaces[first]
                    and spaces.action_spaces[agent] == spaces.action_spaces[first]
                )
                check_field(
                    same,
                    "share_policy",
                    True,
                    f"False here: agents {first!r} and {agent!r} have different spaces "
                    f"({spaces.observation_spaces[first]}, {spaces.action_spaces[first]}) vs "
                    f"({spaces.observation_spaces[agent]}, {spaces.action_spaces[agent]})",
                )
            self.multi_agent(
                policies={SHARED_POLICY_ID: _policy_spec(spaces, spaces.agents[0])},
                policy_mapping_fn=one_shared_module,
            )
        else:
            self.multi_agent(
                policies={a: _policy_spec(spaces, a) for a in spaces.agents},
                policy_mapping_fn=module_per_agent,
            )

    def module_ids(self) -> list[str]:
        """The policy modules in agent order (the order `fixed_order` uses)."""
        agents = self.team_spaces().agents
        ids: list[str] = []
        for agent in agents:
            mid = self.policy_mapping_fn(agent, None)
            if mid not in ids:
                ids.append(mid)
        return ids

    def network_config(self) -> dict[str, Any]:
        """The MLP settings shared by actors and critic (their `model_config`)."""
        return {
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "layer_norm": self.layer_norm,
        }

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(
            module_class=ActorRLModule,
            model_config=self.network_config(),
        )

    @override(AlgorithmConfig)
    def get_multi_rl_module_spec(
        self, *, inference_only: bool = False, **kwargs
    ) -> MultiRLModuleSpec:
        """The actors, plus the learner-only shared critic on the global state."""
        spec = super().get_multi_rl_module_spec(inference_only=inference_only, **kwargs)
        if not inference_only:
            spec.add_modules(
                {
                    SHARED_CRITIC_ID: RLModuleSpec(
                        module_class=SharedCriticRLModule,
                        observation_space=self.team_spaces().state_space,
                        action_space=next(iter(self.team_spaces().action_spaces.values())),
                        learner_only=True,
                        model_config=self.network_config(),
                    )
                }
            )
        return spec

    @override(AlgorithmConfig)
    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        """Only the team-batch builder (after any user connectors): rows stay aligned."""
        pipeline = super().build_learner_connector(
            input_observation_space, input_action_space, device
        )
        pipeline.append(TeamBatchBuilder())
        return pipeline


def _policy_spec(spaces: TeamSpaces, agent: str) -> PolicySpec:
    """The agent's spaces, so module specs never depend on an EnvRunner reporting them."""
    return PolicySpec(
        observation_space=spaces.observation_spaces[agent], action_space=spaces.action_spaces[agent]
    )
