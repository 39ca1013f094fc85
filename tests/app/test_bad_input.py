"""Bad input is named before any Ray actor starts: through Python (`validate()` raises one
`ConfigError` naming the field, its value and what is allowed) and through the CLI (exit
status 2, one message naming the file or argument, the key and what is allowed, no
traceback)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ray import tune

from rllib_hatrpo.algorithms.settings import ConfigError
from rllib_hatrpo.app import cli
from rllib_hatrpo.registry import algorithm_class

ENVS = {
    "HATRPO": "simple_spread_v3",
    "HAPPO": "simple_spread_v3",
    "HAA2C": "simple_spread_v3",
    "TRPO": "Pendulum-v1",
}

# (algorithm, builder method, field, bad value): each alone makes validate() fail.
PYTHON_CASES = [
    ("HATRPO", "training", "kl_threshold", -1),  # -1: RLlib's "not provided" in some builders
    ("HATRPO", "training", "kl_threshold", "0.1"),
    ("HATRPO", "training", "kl_threshold", float("nan")),
    ("HATRPO", "training", "critic_lr", "fast"),
    ("HATRPO", "training", "critic_lr", 0.0),
    ("HATRPO", "training", "hidden_sizes", "128"),
    ("HATRPO", "training", "hidden_sizes", []),
    ("HATRPO", "training", "hidden_sizes", [64, 0]),
    ("HATRPO", "training", "cg_iters", 2.5),
    ("HATRPO", "training", "cg_iters", 0),
    ("HATRPO", "training", "backtrack_coeff", 1.0),
    ("HATRPO", "training", "accept_ratio", 2),
    ("HATRPO", "training", "fisher_fraction", 0),
    ("HATRPO", "training", "gamma", 1.5),
    ("HATRPO", "training", "lambda_", "high"),
    ("HATRPO", "training", "activation", "gelu"),
    ("HATRPO", "training", "value_clip", -0.1),
    ("HATRPO", "training", "critic_minibatches", 0),
    ("HATRPO", "training", "critic_minibatches", 100_000),  # more than the batch's rows
    ("HATRPO", "training", "fixed_order", "yes"),
    ("HATRPO", "training", "train_batch_size_per_learner", 0),
    ("HATRPO", "training", "train_batch_size_per_learner", -1),
    ("HATRPO", "training", "lr", 0.1),  # not used by HATRPO
    ("HATRPO", "training", "num_epochs", 3),  # not used: critic_epochs
    ("HATRPO", "training", "model", {"fcnet_hiddens": [8]}),  # not used: hidden_sizes
    ("HATRPO", "env_runners", "num_env_runners", -1),
    ("HATRPO", "env_runners", "num_envs_per_env_runner", 0),
    ("HATRPO", "env_runners", "rollout_fragment_length", 0),
    ("HATRPO", "learners", "num_learners", -1),
    ("HATRPO", "evaluation", "evaluation_num_env_runners", -1),
    ("HATRPO", "fault_tolerance", "env_runner_recovery_timeout_s", 0),
    ("HAPPO", "training", "clip_param", 0),
    ("HAPPO", "training", "ppo_epochs", 1.5),
    ("HAPPO", "training", "entropy_coeff", -0.01),
    ("HAPPO", "training", "lr", -1),
    ("HAPPO", "training", "lr", [[100, 1e-3]]),  # a schedule must start at timestep 0
    ("HAPPO", "training", "minibatch_size", 64),  # not used: actor_minibatches
    ("HAA2C", "training", "a2c_epochs", 0),
    ("HAA2C", "training", "actor_minibatches", 0),
    ("HAA2C", "training", "use_value_norm", 1),
    ("TRPO", "training", "hidden_sizes", (64, "x")),
    ("TRPO", "training", "kl_threshold", None),
]


def _config(algorithm: str):
    return algorithm_class(algorithm).get_default_config().environment(ENVS[algorithm])


@pytest.mark.parametrize(
    "algorithm, builder, field, value",
    PYTHON_CASES,
    ids=[f"{a}-{f}={v!r}" for a, _, f, v in PYTHON_CASES],
)
def test_python_bad_setting_is_named(algorithm, builder, field, value):
    with pytest.raises(ValueError) as err:  # RLlib's builder itself, or our validate()
        getattr(_config(algorithm), builder)(**{field: value}).validate()
    if not isinstance(err.value, ConfigError):  # RLlib's builder checks a few fields itself
        assert field in str(err.value)
        return
    assert len(err.value.problems) == 1, err.value.problems
    message = err.value.problems[0]
    assert message.startswith(f"{field}={value!r}"), message
    assert "must be" in message or f"not used by {algorithm}" in message, message


def test_python_reports_every_problem_at_once():
    config = (
        _config("HATRPO")
        .training(kl_threshold="0.1", hidden_sizes="128", lr=0.1)
        .env_runners(num_env_runners=-1)
    )
    with pytest.raises(ConfigError) as err:
        config.validate()
    named = sorted(problem.split("=")[0] for problem in err.value.problems)
    assert named == ["hidden_sizes", "kl_threshold", "lr", "num_env_runners"]


def test_search_spaces_and_numpy_scalars_pass():
    config = (
        _config("HATRPO")
        .training(
            kl_threshold=tune.uniform(0.005, 0.02),
            critic_lr=tune.grid_search([1e-4, 1e-3]),
            cg_iters=np.int64(10),
            gamma=np.float32(0.99),
            hidden_sizes=(np.int64(16), 16),
            fixed_order=np.bool_(True),
        )
        .env_runners(num_env_runners=np.int64(0))
    )
    config.validate()
    assert config.cg_iters == 10


@pytest.mark.slow
def test_bad_setting_stops_build_algo_before_ray_starts():
    code = textwrap.dedent(
        """
        import ray
        from rllib_hatrpo import HAPPOConfig
        from rllib_hatrpo.algorithms.settings import ConfigError
        try:
            HAPPOConfig().environment("simple_spread_v3").training(ppo_epochs=0).build_algo()
        except ConfigError as err:
            assert "ppo_epochs=0 (int) is invalid" in str(err), err
        assert not ray.is_initialized()
        print("named before Ray")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "named before Ray" in out.stdout


QUICK = "algorithm: HATRPO\nenv: simple_spread_v3\nstop: {training_iteration: 1}\n"

# (name, experiment file text or None, CLI arguments with FILE for the file, expected texts)
CLI_CASES = [
    ("yaml syntax", "algorithm: HATRPO\nenv: [x\n", ["train", "FILE"], ["not valid YAML at line"]),
    ("not a mapping", "- HATRPO\n", ["train", "FILE"], ["expected a mapping"]),
    ("unknown top key", QUICK + "trainig: {}\n", ["train", "FILE"], ["trainig: unknown key"]),
    (
        "missing stop and misspelt key, both",
        "algorithm: HATRPO\nenv: simple_spread_v3\ntraining: {kl_treshold: 0.1}\n",
        ["train", "FILE"],
        ["2 problems", "stop: missing", "training.kl_treshold: unknown key (did you mean"],
    ),
    ("unknown algorithm", QUICK.replace("HATRPO", "MAPPO"), ["train", "FILE"], ["'MAPPO'"]),
    (
        "unknown env",
        QUICK.replace("simple_spread_v3", "no_such_env"),
        ["train", "FILE"],
        ["env='no_such_env' is unknown", "mamujoco"],
    ),
    (
        "wrong type",
        QUICK + "training: {kl_threshold: big}\n",
        ["train", "FILE"],
        ["training.kl_threshold: 'big' (str) has the wrong type; allowed: float"],
    ),
    (
        "out of range",
        QUICK + "training: {kl_threshold: -1}\n",
        ["train", "FILE"],
        ["training.kl_threshold=-1 (int) is invalid: must be a number > 0"],
    ),
    (
        "ignored RLlib key",
        QUICK + "training: {lr: 0.001}\n",
        ["train", "FILE"],
        ["training.lr: not used by HATRPO", "kl_threshold"],
    ),
    (
        "hidden sizes as text",
        QUICK + "training: {hidden_sizes: '128'}\n",
        ["train", "FILE"],
        ["training.hidden_sizes: '128' (str) has the wrong type; allowed: list[int]"],
    ),
    ("negative stop", QUICK, ["train", "FILE", "--stop-timesteps", "-5"], ["--stop-timesteps"]),
    (
        "zero stop in the file",
        QUICK.replace("training_iteration: 1", "training_iteration: 0"),
        ["train", "FILE"],
        ["stop.training_iteration: 0 (int) is not positive"],
    ),
    (
        "negative runners",
        QUICK,
        ["train", "FILE", "--num-env-runners", "-1"],
        ["env_runners.num_env_runners=-1 (int) is invalid: must be an integer >= 0"],
    ),
    ("negative seed", QUICK, ["train", "FILE", "--seed", "-1"], ["seed: -1 (int) is too small"]),
    (
        "zero checkpoint interval",
        QUICK + "checkpoint_every: 0\n",
        ["train", "FILE"],
        ["checkpoint_every: 0 (int) is too small"],
    ),
    ("override without =", QUICK, ["train", "FILE", "--set", "seed"], ["expected KEY=VALUE"]),
    ("no such file", None, ["train", "no_such.yaml"], ["no_such.yaml"]),
    ("a directory as file", None, ["train", "."], ["is a directory"]),
    (
        "unknown search key",
        QUICK + "search: {kl_treshold: {grid_search: [0.01]}}\n",
        ["tune", "FILE"],
        ["search.kl_treshold: unknown key (search keys are training keys)"],
    ),
    (
        "unknown scheduler",
        QUICK + "scheduler: {type: pbt}\n",
        ["tune", "FILE"],
        ["scheduler.type: 'pbt' (str) is unknown; allowed: asha"],
    ),
    (
        "unknown factorization",
        "algorithm: HAPPO\nenv: mamujoco\n"
        "env_config: {scenario: Walker2d, agent_factorization: per_limb}\n"
        "stop: {training_iteration: 1}\n",
        ["train", "FILE"],
        ["env_config.agent_factorization: 'per_limb' (str) is unknown"],
    ),
    (
        "missing model file",
        "algorithm: HAPPO\nenv: mamujoco\nenv_config: {scenario: Walker2d}\n"
        "stop: {training_iteration: 1}\n",
        ["train", "FILE", "--set", "env_config.xml_file=no_such.xml"],
        ["xml_file='no_such.xml' is invalid", "does not exist", "allowed: None"],
    ),
    ("evaluate zero episodes", None, ["evaluate", ".", "--episodes", "0"], ["--episodes"]),
    ("evaluate no checkpoint", None, ["evaluate", "."], ["holds no algorithm checkpoint"]),
    ("resume no run directory", None, ["resume", "no_such_run"], ["experiment.yaml"]),
]


@pytest.mark.parametrize(
    "name, text, argv, expected", CLI_CASES, ids=[case[0] for case in CLI_CASES]
)
def test_cli_bad_input_exits_2_naming_it(name, text, argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        Path("experiment.yaml").write_text(text)
    argv = ["experiment.yaml" if arg == "FILE" else arg for arg in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for part in expected:
        assert part in err, (part, err)
    assert not Path("runs").exists()  # nothing was started


def test_at_least_thirty_distinct_bad_inputs():
    assert len(PYTHON_CASES) + len(CLI_CASES) >= 30
    assert len({(a, f, repr(v)) for a, _, f, v in PYTHON_CASES}) == len(PYTHON_CASES)
