"""What a config's settings must be: rules with their messages, the error that lists every
broken one, and RLlib's settings that our algorithms do not use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rllib_hatrpo.schema import conforms

IGNORED_SETTINGS: dict[str, str] = {
    "num_epochs": "set the critic's passes with critic_epochs (the actors' with ppo_epochs "
    "for HAPPO, a2c_epochs for HAA2C)",
    "minibatch_size": "set the minibatches per epoch with critic_minibatches (and "
    "actor_minibatches for HAPPO and HAA2C)",
    "shuffle_batch_per_epoch": "minibatches are always drawn from a fresh permutation",
    "model": "set the actors' and critic's networks with hidden_sizes, activation and layer_norm",
    "optimizer": "every module has HARL's Adam (eps 1e-5)",
    "grad_clip": "set the gradient-norm clip with max_grad_norm",
    "grad_clip_by": "gradients are clipped by their global norm (max_grad_norm)",
}
"""RLlib `training()` settings no heterogeneous-agent algorithm uses, and what sets that instead."""


class ConfigError(ValueError):
    """Every invalid setting of a config, one message per line (`problems`)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Rule:
    """What one setting must be: `check` on a value of type `hint` (default: the hint of our
    builder keyword), described as `allowed`."""

    check: Callable[[Any], bool]
    allowed: str
    hint: Any = None


def minibatch_rule(rows: Any) -> Rule:
    """Minibatches per epoch: at least 1, at most the rows of one train batch."""
    rows = count_or_one(rows)
    return Rule(lambda v: 1 <= v <= rows, f"an integer in [1, {rows}] (the batch size)")


def invalid(field: str, value: Any, allowed: str) -> str:
    """The message for an invalid setting: its name, value (and type) and what is allowed."""
    return f"{field}={value!r} ({type(value).__name__}) is invalid: must be {allowed}."


def check_field(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raises a ConfigError naming the field, its value and what is allowed."""
    if not ok:
        raise ConfigError([invalid(field, value, allowed)])


def any_value(value: Any) -> bool:
    """A rule's check for settings with only a type to check."""
    return True


def count_or_one(value: Any) -> int:
    """A count used to describe another setting's bounds; 1 when it is itself invalid."""
    return value if conforms(value, int) and value >= 1 else 1


def positive_rate_or_schedule(value: Any) -> bool:
    """A learning rate > 0, or RLlib's piecewise-linear schedule [[0, lr0], [t1, lr1], ...]
    (at least two points, as RLlib's `Scheduler` requires)."""
    if not isinstance(value, list | tuple):
        return value > 0
    steps = [point[0] for point in value]
    return (
        len(value) >= 2
        and all(len(point) == 2 and point[1] >= 0 for point in value)
        and steps[0] == 0
        and all(a < b for a, b in zip(steps, steps[1:], strict=False))
    )


def rate_rule() -> Rule:
    """A learning rate (`lr`, `critic_lr`): a number, or an RLlib schedule."""
    return Rule(
        positive_rate_or_schedule,
        "a number > 0, or a schedule [[timestep, rate], ...] of two or more points with "
        "rising timesteps starting at 0 and rates >= 0",
        float | list[list[float]],
    )
