"""Every file in tune_configs/ passes the schema and builds a valid config; the schema names
the file, the key and what is allowed when something is wrong."""

from pathlib import Path

import pytest
from gymnasium_robotics.envs.multiagent_mujoco.obsk import Node

from rllib_hatrpo.app.experiment import (
    ExperimentError,
    load_experiment,
    parse_override,
    validate_experiment,
)

CONFIGS = Path(__file__).resolve().parents[2] / "tune_configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))
QUICK = CONFIGS / "hatrpo_halfcheetah_2x3_quick.yaml"


def test_the_expected_experiments_exist():
    names = {f.relative_to(CONFIGS).as_posix() for f in FILES}
    for task in [
        "halfcheetah_2x3",
        "halfcheetah_6x1",
        "ant_4x2",
        "walker2d_2x3",
        "walker2d_6x1",
        "hopper_3x1",
        "simple_spread",
        "simple_speaker_listener",
    ]:
        assert {f"hatrpo_{task}.yaml", f"happo_{task}.yaml"} <= names, task
    for task in ["ant_4x2", "halfcheetah_2x3", "hopper_3x1", "walker2d_2x3", "walker2d_6x1"]:
        assert f"haa2c_{task}.yaml" in names, task
    assert {"happo_humanoid_17x1.yaml", "trpo_halfcheetah.yaml", QUICK.name} <= names
    assert any(name.startswith("search/") for name in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_file_passes_schema_and_builds_a_valid_config(path):
    experiment = load_experiment(path)
    config = experiment.build_config()
    config.validate()  # probes the env: spaces, agents, one policy module per agent
    assert type(config).__name__ == f"{experiment.algorithm}Config"
    if experiment.search:
        space = experiment.param_space()
        assert {key: getattr(space, key) for key in experiment.search}
    if experiment.env == "mamujoco" and not path.name.endswith("_quick.yaml"):
        # HARL's MaMuJoCo setting
        assert experiment.env_config["obs_mode"] == "global"
        assert config.num_envs_per_env_runner * 200 == config.train_batch_size_per_learner == 4000
        assert config.hidden_sizes == [128, 128, 128]
        assert experiment.stop["num_env_steps_sampled_lifetime"] >= 1_000_000


def test_single_joint_factorization_gives_one_agent_per_joint():
    walker = load_experiment(CONFIGS / "happo_walker2d_6x1.yaml").build_config()
    humanoid = load_experiment(CONFIGS / "happo_humanoid_17x1.yaml").build_config()
    partition = walker.env_config["agent_factorization"]["partition"]
    assert len(partition) == 6 and all(isinstance(p[0], Node) for p in partition)
    assert len(humanoid.env_config["agent_factorization"]["partition"]) == 17
    humanoid.validate()
    assert len(humanoid.policies) == 17


def test_harl_learning_rate_decay_is_a_schedule_of_actors_and_critic_alike():
    """HARL's `use_linear_lr_decay` decays the actors' and the critic's rates to 0 over 10M
    steps: in its tuned HAPPO Hopper 3x1, Walker2d 2x3, Humanoid 17x1 and every HAA2C file."""
    decaying = set()
    for path in FILES:
        training = load_experiment(path).training
        if isinstance(training.get("lr"), list):
            decaying.add(path.name)
            rate = training["lr"][0][1]
            assert training["lr"] == training["critic_lr"] == [[0, rate], [10_000_000, 0.0]]
        else:
            assert not isinstance(training.get("critic_lr"), list), path.name
    assert decaying == {
        "happo_hopper_3x1.yaml",
        "happo_walker2d_2x3.yaml",
        "happo_humanoid_17x1.yaml",
        *(f"haa2c_{task}.yaml" for task in ["ant_4x2", "halfcheetah_2x3", "hopper_3x1"]),
        *(f"haa2c_walker2d_{conf}.yaml" for conf in ["2x3", "6x1"]),
    }
    assert load_experiment(CONFIGS / "hatrpo_hopper_3x1.yaml").training["kl_threshold"] == 0.001


def test_the_critic_clips_its_value_loss_with_harls_clip_param():
    """HARL's critic takes `clip_param` from the algorithm's section of the tuned file: HAPPO's
    PPO clip (0.05 on HalfCheetah 2x3), HATRPO's 0.2."""
    for path in FILES:
        experiment = load_experiment(path)
        config = experiment.build_config()
        if experiment.algorithm == "HAPPO":
            assert config.value_clip == config.clip_param, path.name
        elif experiment.algorithm == "HATRPO":
            assert config.value_clip == 0.2, path.name
    happo = load_experiment(CONFIGS / "happo_halfcheetah_2x3.yaml").build_config()
    assert happo.value_clip == happo.clip_param == 0.05


def test_quick_file_is_the_make_train_default():
    experiment = load_experiment(QUICK)
    config = experiment.build_config()
    assert experiment.algorithm == "HATRPO"
    assert experiment.env_config == {
        "scenario": "HalfCheetah",
        "agent_conf": "2x3",
        "obs_mode": "local",
    }
    assert (config.num_env_runners, config.num_envs_per_env_runner) == (1, 20)
    assert experiment.stop == {"num_env_steps_sampled_lifetime": 200_000}
    assert config.seed == 0 and config.kl_threshold == 0.01


def test_overrides_set_dotted_keys_with_yaml_values():
    experiment = load_experiment(
        QUICK,
        [
            parse_override("training.kl_threshold=2e-2"),  # YAML 1.2 float, not a string
            parse_override("env_runners.num_env_runners=0"),
            parse_override("learners.num_learners=0"),  # a section the file lacks
            parse_override("training.hidden_sizes=[32, 32]"),
            parse_override("seed=7"),
        ],
    )
    assert experiment.training == {"kl_threshold": 0.02, "hidden_sizes": [32, 32]}
    assert experiment.env_runners["num_env_runners"] == 0
    assert experiment.learners == {"num_learners": 0}
    assert experiment.build_config().seed == 7


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        (
            {"training.kl_treshold": 0.02},
            "training.kl_treshold",
            "unknown key (did you mean kl_threshold?); allowed: accept_ratio, activation",
        ),
        (
            {"training.kl_threshold": "big"},
            "training.kl_threshold",
            "'big' (str) has the wrong type; allowed: float",
        ),
        (
            {"algorithm": "HATRPPO"},
            "algorithm",
            "'HATRPPO' (str) is unknown; allowed: HATRPO, HAPPO, HAA2C, TRPO",
        ),
        (
            {"env_runners.num_env_runners": 1.5},
            "env_runners.num_env_runners",
            "1.5 (float) has the wrong type; allowed: int | null",
        ),
        ({"stopp": 3}, "stopp", "unknown key (did you mean stop?); allowed: algorithm,"),
        (
            {"search.kl_threshold": {"grid": [1]}},
            "search.kl_threshold",
            "is no search space; allowed: {grid_search:",
        ),
        (
            {"search.kl_threshold": {"loguniform": [0.0, 0.1]}},
            "search.kl_threshold.loguniform",
            "is invalid; allowed: [low, high], 0 < low",
        ),
        ({"scheduler": {"type": "pbt"}}, "scheduler.type", "is unknown; allowed: asha"),
        (
            {"env_config.agent_factorization": "per_leg"},
            "env_config.agent_factorization",
            "'per_leg' (str) is unknown; allowed: single_joint",
        ),
        ({"wandb.team": "x"}, "wandb.team", "unknown key; allowed: entity, group, notes"),
    ],
)
def test_schema_errors_name_file_key_and_what_is_allowed(override, key, message):
    with pytest.raises(ExperimentError) as err:
        load_experiment(QUICK, override)
    assert str(err.value).startswith(f"{QUICK}: {key}: ")
    assert message in str(err.value)


def test_missing_required_key_and_non_mapping_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("algorithm: HATRPO\nenv: mamujoco\n")
    with pytest.raises(ExperimentError, match=r"x\.yaml: stop: missing; allowed: dict\[str, int\]"):
        load_experiment(path)
    path.write_text("- a list\n")
    with pytest.raises(ExperimentError, match=r"x\.yaml: expected a mapping of keys"):
        load_experiment(path)


def test_experiment_round_trips_through_its_dict():
    for path in FILES:
        experiment = load_experiment(path)
        assert validate_experiment(experiment.to_dict(), "x") == experiment
    enabled = load_experiment(QUICK, {"wandb": {}})
    assert validate_experiment(enabled.to_dict(), "x").wandb == {}
