"""Experiment files: one YAML names the algorithm, the env, their settings and when to stop.

    algorithm: HATRPO                 # HATRPO | HAPPO | HAA2C | TRPO
    env: mamujoco                     # a registered env name, or a Gymnasium id for TRPO
    env_config: {scenario: HalfCheetah, agent_conf: 2x3, obs_mode: global}
    env_runners: {num_env_runners: 1, num_envs_per_env_runner: 20}
    learners: {}                      # keyword arguments of AlgorithmConfig.learners()
    training: {kl_threshold: 0.01}    # keyword arguments of the algorithm's .training()
    evaluation: {}                    # keyword arguments of AlgorithmConfig.evaluation()
    fault_tolerance: {}               # keyword arguments of the config's .fault_tolerance()
    stop: {num_env_steps_sampled_lifetime: 10000000}   # and/or training_iteration
    seed: 0
    checkpoint_every: 1               # iterations between checkpoints (train, tune trials)
    wandb: {project: rllib-hatrpo}    # optional: log to Weights & Biases
    # `rllib-hatrpo tune` only:
    search: {kl_threshold: {grid_search: [0.005, 0.01]}, critic_lr: {loguniform: [1e-4, 1e-3]}}
    num_samples: 1
    scheduler: {type: asha, metric: team_return, mode: max, max_t: 250, grace_period: 25}

The schema is derived, not listed: the top-level keys are the fields of :class:`Experiment`;
the keys of `env_runners`, `learners`, `training`, `evaluation` and `fault_tolerance` are the
keyword arguments of the algorithm config's builder method of that name, and `scheduler`'s are
those of Tune's `ASHAScheduler`, each checked against its type annotation. A wrong file fails
before Ray starts with a message naming the file, the key and what is allowed. Value ranges
(kl_threshold > 0, ...) are the config's own `validate()`'s job.

In `env_config` of the `mamujoco` env, `agent_factorization: single_joint` stands for
`single_joint_factorization(scenario)` (one agent per joint: Walker2d 6x1, Humanoid 17x1), as
YAML cannot hold the library's `Node` objects.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided

from rllib_hatrpo.envs.mamujoco import single_joint_factorization
from rllib_hatrpo.registry import ALGORITHMS, algorithm_class
from rllib_hatrpo.train import add_team_return

BUILDER_SECTIONS = ("env_runners", "learners", "training", "evaluation", "fault_tolerance")
"""Sections passed as keyword arguments to the `AlgorithmConfig` builder method of that name."""

TUNE_STOP_KEYS = {
    "num_env_steps_sampled_lifetime": "env_runners/num_env_steps_sampled_lifetime",
    "training_iteration": "training_iteration",
}
"""Stop criteria (a run stops when any is reached) and their keys in Tune's flattened result."""

STOP_KEYS: dict[str, Any] = dict.fromkeys(TUNE_STOP_KEYS, int)

WANDB_KEYS: dict[str, Any] = {
    "project": str,
    "entity": str,
    "group": str,
    "tags": list[str],
    "notes": str,
}
"""Settings passed to `wandb.init` (and to Tune's `WandbLoggerCallback`)."""

SEARCH_SPACES: dict[str, str] = {
    "grid_search": "a list of values, each tried",
    "choice": "a list of values, one drawn per sample",
    "uniform": "[low, high]",
    "loguniform": "[low, high], 0 < low",
}

SCHEDULERS = ("asha",)
MODES = ("max", "min")
FACTORIZATIONS: dict[str, Callable[[str], dict[str, list[Any]]]] = {
    "single_joint": single_joint_factorization,
}
"""Names usable as `env_config.agent_factorization` of the `mamujoco` env."""


class ExperimentError(ValueError):
    """An experiment file (or an override) that does not fit the schema."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Experiment:
    """A validated experiment file; the field names are the file's top-level keys."""

    algorithm: str
    env: str
    env_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    env_runners: dict[str, Any] = dataclasses.field(default_factory=dict)
    learners: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)
    fault_tolerance: dict[str, Any] = dataclasses.field(default_factory=dict)
    stop: dict[str, int]
    seed: int | None = None
    checkpoint_every: int = 1
    wandb: dict[str, Any] | None = None
    search: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    num_samples: int = 1
    scheduler: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able data (keys left unset are left out); `validate_experiment` of it
        gives this experiment back."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def build_config(self) -> AlgorithmConfig:
        """The algorithm config, without search spaces (call `.validate()` or `build_algo()`)."""
        config = algorithm_class(self.algorithm).get_default_config()
        config.environment(self.env, env_config=resolve_env_config(self.env, self.env_config))
        for section in BUILDER_SECTIONS:
            getattr(config, section)(**getattr(self, section))
        return config.debugging(seed=self.seed).callbacks(on_train_result=add_team_return)

    def param_space(self) -> AlgorithmConfig:
        """The config with Tune search spaces in place of the `search` keys' values."""
        from ray import tune

        spaces: dict[str, Callable[[list[Any]], Any]] = {
            "grid_search": tune.grid_search,
            "choice": tune.choice,
            "uniform": lambda bounds: tune.uniform(*bounds),
            "loguniform": lambda bounds: tune.loguniform(*bounds),
        }
        return self.build_config().training(
            **{
                key: spaces[kind](values)
                for key, spec in self.search.items()
                for kind, values in spec.items()
            }
        )

    def tune_stop(self) -> dict[str, int]:
        """The stop criteria as keys of Tune's flattened result."""
        return {TUNE_STOP_KEYS[key]: value for key, value in self.stop.items()}


def resolve_env_config(env: str, env_config: Mapping[str, Any]) -> dict[str, Any]:
    """`env_config` with a named `agent_factorization` (mamujoco) replaced by its value."""
    resolved = dict(env_config)
    name = resolved.get("agent_factorization")
    if env == "mamujoco" and isinstance(name, str):
        resolved["agent_factorization"] = FACTORIZATIONS[name](
            resolved.get("scenario", "HalfCheetah")
        )
    return resolved


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: `5e-4` is a number, not the string PyYAML makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d[\d_]*\.?[\d_]*(?:[eE][-+]?\d+)?|\.\d[\d_]*(?:[eE][-+]?\d+)?"
        r"|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parses YAML text (a file, or one `--set` value) with the experiment loader."""
    return yaml.load(text, Loader=_Loader)


def parse_override(text: str) -> tuple[str, Any]:
    """`"training.kl_threshold=0.02"` -> `("training.kl_threshold", 0.02)` (YAML value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ExperimentError(f"--set {text!r}: expected KEY=VALUE, e.g. training.lr=0.001")
    return key.strip(), parse_yaml(value)


def load_experiment(
    path: str | Path, overrides: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()
) -> Experiment:
    """Reads an experiment file, applies dotted-key overrides, and checks the schema.

    Args:
        path: The YAML file.
        overrides: `{"training.kl_threshold": 0.02, "seed": 3, ...}` or a list of such pairs;
            each sets one key (creating missing sections) before the check.

    Raises:
        ExperimentError: Naming the file, the key and what is allowed.
        FileNotFoundError: If `path` does not exist.
    """
    source = str(path)
    data = parse_yaml(Path(path).read_text())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ExperimentError(f"{source}: expected a mapping of keys, got {_show(data)}")
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for key, value in items:
        _set_dotted(data, key, value, source)
    return validate_experiment(data, source)


def _set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    *parents, leaf = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            raise ExperimentError(f"{source}: {key}: {where} is not a mapping")
    node[leaf] = value


def validate_experiment(data: Mapping[str, Any], source: str) -> Experiment:
    """Checks plain data against the schema (see the module docstring) and builds the
    :class:`Experiment`.

    Raises:
        ExperimentError: Naming `source`, the key and what is allowed.
    """

    def fail(key: str, problem: str, allowed: str) -> typing.NoReturn:
        raise ExperimentError(f"{source}: {key}: {problem}; allowed: {allowed}")

    top = typing.get_type_hints(Experiment)
    _check_keys(data, top, "", fail)
    for field in dataclasses.fields(Experiment):
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        if required and field.name not in data:
            fail(field.name, "missing", _describe(top[field.name]))
    if data["algorithm"] not in ALGORITHMS:
        fail("algorithm", f"{_show(data['algorithm'])} is unknown", ", ".join(ALGORITHMS))
    config_cls = type(algorithm_class(data["algorithm"]).get_default_config())
    sections: dict[str, dict[str, Any]] = {
        **{name: builder_fields(config_cls, name) for name in BUILDER_SECTIONS},
        "stop": STOP_KEYS,
        "wandb": WANDB_KEYS,
        "scheduler": {"type": str, **signature_fields(_asha_class().__init__)},
    }
    for section, fields in sections.items():
        _check_keys(data.get(section) or {}, fields, f"{section}.", fail)
    if not data["stop"]:
        fail("stop", "empty", f"at least one of {', '.join(STOP_KEYS)}")
    _check_env_config(data, fail)
    _check_search(data.get("search") or {}, sections["training"], fail)
    _check_scheduler(data.get("scheduler"), fail)
    return Experiment(**data)


def _check_keys(data: Mapping[str, Any], fields: Mapping[str, Any], prefix: str, fail) -> None:
    """Every key of `data` is one of `fields` and its value fits the field's type."""
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            problem = f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
            fail(f"{prefix}{key}", problem, ", ".join(sorted(fields)))
        if not conforms(value, fields[key]):
            fail(f"{prefix}{key}", f"{_show(value)} has the wrong type", _describe(fields[key]))


def _check_env_config(data: Mapping[str, Any], fail) -> None:
    name = (data.get("env_config") or {}).get("agent_factorization")
    if data["env"] == "mamujoco" and isinstance(name, str) and name not in FACTORIZATIONS:
        fail(
            "env_config.agent_factorization",
            f"{_show(name)} is unknown",
            f"{', '.join(FACTORIZATIONS)} (or a dict of obsk Nodes in Python)",
        )


def _check_search(search: Mapping[str, Any], training: Mapping[str, Any], fail) -> None:
    """Each `search` key is a training key; its value is one Tune search space."""
    for key, spec in search.items():
        where = f"search.{key}"
        if key not in training:
            fail(where, "unknown key (search keys are training keys)", ", ".join(sorted(training)))
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in SEARCH_SPACES):
            fail(where, f"{_show(spec)} is no search space", _describe_spaces())
        ((kind, values),) = spec.items()
        if kind in ("grid_search", "choice"):
            if not (isinstance(values, list) and values):
                fail(f"{where}.{kind}", f"{_show(values)} is no list", SEARCH_SPACES[kind])
            for value in values:
                if not conforms(value, training[key]):
                    fail(
                        f"{where}.{kind}",
                        f"{_show(value)} has the wrong type",
                        _describe(training[key]),
                    )
        elif not (
            conforms(values, list[float])
            and len(values) == 2
            and values[0] < values[1]
            and (kind == "uniform" or values[0] > 0)
        ):
            fail(f"{where}.{kind}", f"{_show(values)} is invalid", SEARCH_SPACES[kind])


def _check_scheduler(scheduler: Mapping[str, Any] | None, fail) -> None:
    if not scheduler:
        return
    if scheduler.get("type") not in SCHEDULERS:
        fail("scheduler.type", f"{_show(scheduler.get('type'))} is unknown", ", ".join(SCHEDULERS))
    if scheduler.get("mode", "max") not in MODES:
        fail("scheduler.mode", f"{_show(scheduler['mode'])} is unknown", ", ".join(MODES))


def _describe_spaces() -> str:
    return "; ".join(f"{{{kind}: {what}}}" for kind, what in SEARCH_SPACES.items())


def _asha_class() -> type:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler


def builder_fields(config_cls: type[AlgorithmConfig], method: str) -> dict[str, Any]:
    """Keyword arguments of `config_cls.<method>()` and their type hints, up the class chain.

    Our configs' builder methods take their own keywords and pass `**kwargs` on to the parent
    class's, so the accepted keywords are the union over the MRO. Only keywords that follow
    RLlib's builder convention (default `NotProvided`) count, which leaves out the deprecated
    ones (default `DEPRECATED_VALUE`).
    """
    fields: dict[str, Any] = {}
    for klass in config_cls.__mro__:
        if method in vars(klass):
            for name, hint in signature_fields(vars(klass)[method], builder=True).items():
                fields.setdefault(name, hint)
    return fields


def signature_fields(function: Callable[..., Any], *, builder: bool = False) -> dict[str, Any]:
    """The named parameters of `function` (not `self`, `*args`, `**kwargs`; with `builder`,
    only those defaulting to `NotProvided`) and their type hints (`Any` where unannotated or
    unresolvable)."""
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(function).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if builder and param.default is not NotProvided:
            continue
        fields[name] = _resolve(param.annotation, function)
    return fields


def _resolve(annotation: Any, function: Callable[..., Any]) -> Any:
    """A string annotation (`from __future__ import annotations`) evaluated where it was
    written; `Any` for a missing or unresolvable one."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        try:
            return eval(annotation, function.__globals__)  # noqa: S307 - our own source code
        except Exception:
            return Any
    return annotation


def conforms(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a type hint (ints count as floats, lists as tuples).

    Hints that no YAML value can fit (classes, callables) accept only what their union
    allows besides them, e.g. None.
    """
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(conforms, value, args))
        return not args or all(conforms(item, args[0]) for item in value)
    if hint is dict or origin is dict:
        return isinstance(value, dict) and (
            not args or all(conforms(item, args[1]) for item in value.values())
        )
    return False


def _describe(hint: Any) -> str:
    """A type hint as a short type expression: `float | list[list[int | float]] | null`."""
    if hint is Any:
        return "any"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(arg) for arg in args)
    if hint is type(None) or hint is None:
        return "null"
    if origin in (list, tuple, dict):
        inner = ", ".join(_describe(arg) for arg in args if arg is not Ellipsis)
        name = "list" if origin is tuple else origin.__name__
        return f"{name}[{inner}]" if inner else name
    return getattr(hint, "__name__", str(hint))


def _show(value: Any) -> str:
    """A value and its YAML type, for messages."""
    return f"{value!r} ({type(value).__name__})"
