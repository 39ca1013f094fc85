"""The result keys our algorithms and learners report, defined once (as RLlib's `ppo.py`
defines `LEARNER_RESULTS_KL_KEY`), and the team return read from a result.

Every `Algorithm.train()` result of HATRPO, HAPPO, HAA2C and TRPO carries :data:`TEAM_RETURN`
and :data:`AGENT_ORDER` at its top level (and `evaluation/team_return` when it evaluated),
so Tune, the CLI and wandb all read the same key. Per policy module, under
`result["learners"][module_id]`, HATRPO's learner reports the trust-region keys and the
first-order learners (HAPPO, HAA2C) the loss keys; every one reports :data:`MEAN_KL`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

TEAM_RETURN = "team_return"
"""Mean episode return of the team over the recent episodes (NaN until one ended)."""
AGENT_ORDER = "agent_order"
"""The order in which this iteration updated the policy modules."""

# Every agent step (per module).
MEAN_KL = "mean_kl"
"""Mean KL(π_old ‖ π_new) over the module's rows after its step."""

# HATRPO's agent step (per module).
SURROGATE_IMPROVEMENT = "surrogate_improvement"
EXPECTED_IMPROVEMENT = "expected_improvement"
LINE_SEARCH_STEPS = "line_search_steps"
STEP_ACCEPTED = "step_accepted"
"""1 if the line search accepted a step, 0 if the old parameters were kept."""

# HAPPO's and HAA2C's agent step (per module), means over the minibatch steps.
POLICY_LOSS = "policy_loss"
ENTROPY = "entropy"
GRAD_NORM = "grad_norm"

# The shared critic's fit.
CRITIC_LOSS = "critic_loss"
EXPLAINED_VARIANCE = "explained_variance"

STEPS_ACCEPTED = "steps_accepted"
"""progress.csv column: how many modules' trust-region steps were accepted this iteration."""

AGENT_RESULTS = "agent_episode_returns_mean"
"""RLlib's per-agent mean episode returns under `result["env_runners"]`."""


def team_return(result: Mapping[str, Any]) -> float | None:
    """The team return of a result (or of its `evaluation` part): the mean over agents of their
    mean episode returns, which is the team reward's return; None until an episode ended."""
    per_agent = result.get(ENV_RUNNER_RESULTS, {}).get(AGENT_RESULTS)
    if not per_agent:
        return None
    value = float(sum(per_agent.values()) / len(per_agent))
    return None if math.isnan(value) else value


class ProgressColumn(NamedTuple):
    """A progress.csv column made of one per-module learner result, over the modules that
    reported `key` this iteration: their mean, or the count of those whose value is true."""

    key: str
    reduce: Literal["mean", "count"]
