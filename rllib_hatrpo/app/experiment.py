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
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

from rllib_hatrpo.envs.mamujoco import FACTORIZATIONS
from rllib_hatrpo.registry import ALGORITHMS, algorithm_class
from rllib_hatrpo.schema import builder_fields, conforms, describe, show, signature_fields

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
        return config.debugging(seed=self.seed)

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

    def qualified(self, problem: str) -> str:
        """A config's problem message with its key's section in this file, see `qualify`."""
        return qualify(problem, self.to_dict())

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


def parse_yaml(text: str, source: str = "YAML") -> Any:
    """Parses YAML text (a file, or one `--set` value) with the experiment loader.

    Raises:
        ExperimentError: Naming `source` and where the text is not valid YAML.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ExperimentError(f"{source}: not valid YAML{where}: {problem}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """`"training.kl_threshold=0.02"` -> `("training.kl_threshold", 0.02)` (YAML value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ExperimentError(f"--set {text!r}: expected KEY=VALUE, e.g. training.lr=0.001")
    return key.strip(), parse_yaml(value, f"--set {text!r}")


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
    if Path(path).is_dir():
        raise ExperimentError(f"{source}: is a directory; expected an experiment YAML file")
    data = parse_yaml(Path(path).read_text(), source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ExperimentError(f"{source}: expected a mapping of keys, got {show(data)}")
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
        ExperimentError: Naming `source` and, for every problem of the file at once, the key,
            what is wrong and what is allowed.
    """
    problems: list[str] = []
    failed: set[str] = set()

    def fail(key: str, problem: str, allowed: str) -> None:
        failed.add(key)
        problems.append(f"{key}: {problem}; allowed: {allowed}")

    top = typing.get_type_hints(Experiment)
    _check_keys(data, top, "", fail)
    for field in dataclasses.fields(Experiment):
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        if required and field.name not in data:
            fail(field.name, "missing", describe(top[field.name]))
    sections: dict[str, dict[str, Any]] = {
        "stop": STOP_KEYS,
        "wandb": WANDB_KEYS,
        "scheduler": {"type": str, **signature_fields(_asha_class().__init__)},
    }
    ignored: dict[str, str] = {}
    algorithm = data.get("algorithm")
    if algorithm in ALGORITHMS:
        config = algorithm_class(algorithm).get_default_config()
        ignored = {
            key: f"not used by {algorithm}: {reason}"
            for key, reason in config.ignored_settings().items()
        }
        sections.update({name: builder_fields(type(config), name) for name in BUILDER_SECTIONS})
        for key in ignored:
            sections["training"].pop(key, None)
    elif "algorithm" in data:
        fail("algorithm", f"{show(algorithm)} is unknown", ", ".join(ALGORITHMS))
    for section, fields in sections.items():
        value = data.get(section) or {}
        if isinstance(value, Mapping):
            _check_keys(
                value, fields, f"{section}.", fail, ignored if section == "training" else {}
            )
    _check_counts(data, fail)
    _check_env_config(data, fail)
    if "training" in sections:
        _check_search(data.get("search") or {}, sections["training"], fail)
    _check_scheduler(data.get("scheduler"), fail)
    if algorithm in ALGORITHMS:
        problems += _setting_problems(config, data, failed)
    if problems:
        raise ExperimentError(problems_message(source, problems))
    return Experiment(**data)


def _setting_problems(
    config: AlgorithmConfig, data: Mapping[str, Any], failed: set[str]
) -> list[str]:
    """The config's own checks (`setting_problems`: types and ranges) of the builder-section
    keys that passed the schema, named with their section."""
    for section in BUILDER_SECTIONS:
        values = data.get(section) or {}
        if not isinstance(values, Mapping):
            continue
        passed = {k: v for k, v in values.items() if f"{section}.{k}" not in failed}
        try:
            getattr(config, section)(**passed)
        except (TypeError, ValueError) as err:  # RLlib's own builder checks
            return [f"{section}: {err}"]
    return [qualify(problem, data) for problem in config.setting_problems()]


def qualify(problem: str, data: Mapping[str, Any]) -> str:
    """A config's problem message (`name=value ...`) with the builder section of `data` that
    sets the name put before it (`training.name=value ...`)."""
    name = problem.split("=", 1)[0]
    for section in BUILDER_SECTIONS:
        values = data.get(section) or {}
        if isinstance(values, Mapping) and name in values:
            return f"{section}.{problem}"
    return problem


def problems_message(source: str, problems: Sequence[str]) -> str:
    """One message for every problem of a file: `FILE: problem`, or `FILE: N problems:` and
    one indented line each."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems)


def _check_keys(
    data: Mapping[str, Any],
    fields: Mapping[str, Any],
    prefix: str,
    fail: Callable[[str, str, str], None],
    ignored: Mapping[str, str] | None = None,
) -> None:
    """Every key of `data` is one of `fields` and its value fits the field's type."""
    for key, value in data.items():
        if ignored and key in ignored:
            fail(f"{prefix}{key}", ignored[key], "remove the key")
        elif key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            problem = f"unknown key (did you mean {close[0]}?)" if close else "unknown key"
            fail(f"{prefix}{key}", problem, ", ".join(sorted(fields)))
        elif not conforms(value, fields[key]):
            fail(f"{prefix}{key}", f"{show(value)} has the wrong type", describe(fields[key]))


def _check_counts(data: Mapping[str, Any], fail: Callable[[str, str, str], None]) -> None:
    """Stop criteria, checkpoint interval and samples are >= 1, the seed >= 0."""
    stop = data.get("stop")
    if isinstance(stop, Mapping):
        if not stop:
            fail("stop", "empty", f"at least one of {', '.join(STOP_KEYS)}")
        for key, value in stop.items():
            if conforms(value, int) and value < 1:
                fail(f"stop.{key}", f"{show(value)} is not positive", "an integer >= 1")
    for key, least in (("checkpoint_every", 1), ("num_samples", 1), ("seed", 0)):
        value = data.get(key)
        if conforms(value, int) and value < least:
            fail(key, f"{show(value)} is too small", f"an integer >= {least}")


def _check_env_config(data: Mapping[str, Any], fail: Callable[[str, str, str], None]) -> None:
    env_config = data.get("env_config") or {}
    name = env_config.get("agent_factorization") if isinstance(env_config, Mapping) else None
    if data.get("env") == "mamujoco" and isinstance(name, str) and name not in FACTORIZATIONS:
        fail(
            "env_config.agent_factorization",
            f"{show(name)} is unknown",
            f"{', '.join(FACTORIZATIONS)} (or a dict of obsk Nodes in Python)",
        )


def _check_search(
    search: Mapping[str, Any], training: Mapping[str, Any], fail: Callable[[str, str, str], None]
) -> None:
    """Each `search` key is a training key; its value is one Tune search space."""
    for key, spec in search.items():
        where = f"search.{key}"
        if key not in training:
            fail(where, "unknown key (search keys are training keys)", ", ".join(sorted(training)))
            continue
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in SEARCH_SPACES):
            fail(where, f"{show(spec)} is no search space", _describe_spaces())
            continue
        ((kind, values),) = spec.items()
        if kind in ("grid_search", "choice"):
            if not (isinstance(values, list) and values):
                fail(f"{where}.{kind}", f"{show(values)} is no list", SEARCH_SPACES[kind])
                continue
            for value in values:
                if not conforms(value, training[key]):
                    fail(
                        f"{where}.{kind}",
                        f"{show(value)} has the wrong type",
                        describe(training[key]),
                    )
        elif not (
            conforms(values, list[float])
            and len(values) == 2
            and values[0] < values[1]
            and (kind == "uniform" or values[0] > 0)
        ):
            fail(f"{where}.{kind}", f"{show(values)} is invalid", SEARCH_SPACES[kind])


def _check_scheduler(
    scheduler: Mapping[str, Any] | None, fail: Callable[[str, str, str], None]
) -> None:
    if not isinstance(scheduler, Mapping) or not scheduler:
        return
    if scheduler.get("type") not in SCHEDULERS:
        fail("scheduler.type", f"{show(scheduler.get('type'))} is unknown", ", ".join(SCHEDULERS))
    if scheduler.get("mode", "max") not in MODES:
        fail("scheduler.mode", f"{show(scheduler['mode'])} is unknown", ", ".join(MODES))


def _describe_spaces() -> str:
    return "; ".join(f"{{{kind}: {what}}}" for kind, what in SEARCH_SPACES.items())


def _asha_class() -> type:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler
