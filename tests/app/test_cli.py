"""The `rllib-hatrpo` command: train writes a run directory, resume continues it, tune runs a
search, evaluate rolls out a checkpoint, and bad input exits with a message naming the key."""

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from rllib_hatrpo.app import cli
from rllib_hatrpo.operations.checkpointing import load_modules
from rllib_hatrpo.registry import algorithm_class

CONFIGS = Path(__file__).resolve().parents[2] / "tune_configs"
QUICK = CONFIGS / "hatrpo_halfcheetah_2x3_quick.yaml"
README_EXPERIMENTS = {
    "HATRPO": QUICK,  # make train
    "HAPPO": CONFIGS / "happo_ant_4x2.yaml",  # make train CONFIG=tune_configs/happo_ant_4x2.yaml
    "HAA2C": CONFIGS / "haa2c_halfcheetah_2x3.yaml",
    "TRPO": CONFIGS / "trpo_halfcheetah.yaml",
}
"""For each algorithm, an experiment file the README shows or lists."""
LEARNER_COLUMNS = {
    "HATRPO": ["mean_kl", "steps_accepted"],
    "HAPPO": ["mean_kl", "entropy"],
    "HAA2C": ["mean_kl", "entropy"],
    "TRPO": ["mean_kl", "steps_accepted"],
}
SMALL = [
    "--set", "training.train_batch_size_per_learner=200",
    "--set", "training.hidden_sizes=[16, 16]",
    "--set", "env_runners.num_envs_per_env_runner=1",
    "--num-env-runners", "0",
]  # fmt: skip


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained_run(ray_session, tmp_path_factory) -> Path:
    """Two iterations of the make-train experiment, made small with --set."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", str(QUICK), *SMALL, "--stop-timesteps", "400", "--seed", "3"]
    assert cli.main([*argv, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_train_writes_curve_plot_summary_checkpoint_and_experiment(trained_run, capsys):
    rows = read_rows(trained_run)
    assert [(r["iteration"], r["env_steps"]) for r in rows] == [("1", "200"), ("2", "400")]
    assert (trained_run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (trained_run / "checkpoint" / "rllib_checkpoint.json").exists()
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["iteration"] == 2 and summary["env_steps"] == 400
    # the resolved experiment: the file plus every override
    saved = yaml.safe_load((trained_run / "experiment.yaml").read_text())
    assert saved["training"] == {
        "kl_threshold": 0.01,
        "train_batch_size_per_learner": 200,
        "hidden_sizes": [16, 16],
    }
    assert saved["env_runners"] == {"num_env_runners": 0, "num_envs_per_env_runner": 1}
    assert saved["stop"] == {"num_env_steps_sampled_lifetime": 400} and saved["seed"] == 3
    assert not (trained_run / "wandb").exists()  # wandb only when asked for


@pytest.mark.slow
def test_resume_continues_counters_and_progress(trained_run, tmp_path):
    assert cli.main(["resume", str(trained_run)]) == 0  # stop already reached: nothing to do
    assert len(read_rows(trained_run)) == 2
    assert cli.main(["resume", str(trained_run), "--stop-timesteps", "600"]) == 0
    rows = read_rows(trained_run)
    assert [(r["iteration"], r["env_steps"]) for r in rows][-2:] == [("2", "400"), ("3", "600")]
    assert float(rows[2]["time_s"]) > float(rows[1]["time_s"])  # the clock goes on
    assert json.loads((trained_run / "summary.json").read_text())["iteration"] == 3


def test_evaluate_rolls_out_the_checkpoint(trained_run, capsys):
    capsys.readouterr()
    checkpoint = trained_run / "checkpoint"
    assert cli.main(["evaluate", str(checkpoint), "--episodes", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 1 and result["episode_len_mean"] == 1000


@pytest.mark.parametrize("algorithm", README_EXPERIMENTS)
@pytest.mark.slow
def test_every_algorithm_trains_resumes_and_evaluates_with_relative_paths(
    algorithm, ray_session, tmp_path, monkeypatch, capsys
):
    """The README's train -> resume -> evaluate, with the relative paths it shows, then
    `from_checkpoint` of the relative checkpoint path."""
    monkeypatch.chdir(tmp_path)
    experiment = README_EXPERIMENTS[algorithm]
    argv = ["train", str(experiment), *SMALL, "--stop-timesteps", "400", "--run-dir", "runs/x"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    rows = read_rows(Path("runs/x"))
    assert [(r["iteration"], r["env_steps"]) for r in rows] == [("1", "200"), ("2", "400")]
    for column in LEARNER_COLUMNS[algorithm]:  # what this algorithm's learner reports
        assert all(row[column] != "" for row in rows), (column, rows)
    assert 0 <= float(rows[-1]["mean_kl"]) < 1.0

    assert cli.main(["resume", "runs/x", "--stop-timesteps", "600"]) == 0
    rows = read_rows(Path("runs/x"))
    assert [r["iteration"] for r in rows] == ["1", "2", "3"]

    capsys.readouterr()
    assert cli.main(["evaluate", "runs/x/checkpoint", "--episodes", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 1 and math.isfinite(result["team_return_mean"])
    assert result["team_return_mean"] != 0.0 and result["episode_len_mean"] >= 1
    # a run directory stands for its checkpoint; the mean-action rollout is deterministic
    assert cli.main(["evaluate", "runs/x", "--episodes", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == result

    algo = algorithm_class(algorithm).from_checkpoint("runs/x/checkpoint")
    try:
        assert algo.iteration == 3
        saved = load_modules(Path("runs/x/checkpoint").resolve(), algo.config.module_ids())
        for module_id, module in saved.items():
            restored = algo.get_module(module_id).get_state()
            for name, value in module.get_state().items():
                assert (restored[name] == value).all(), (module_id, name)
    finally:
        algo.stop()


def test_resume_refuses_a_checkpoint_of_another_algorithm(trained_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    saved = yaml.safe_load((trained_run / "experiment.yaml").read_text())
    del saved["training"]["kl_threshold"]  # a valid HAPPO experiment
    (other / "experiment.yaml").write_text(yaml.safe_dump({**saved, "algorithm": "HAPPO"}))
    (other / "checkpoint").symlink_to(trained_run / "checkpoint")
    capsys.readouterr()
    assert cli.main(["resume", str(other)]) == 2
    err = capsys.readouterr().err
    assert "its checkpoint holds a HATRPO algorithm, but its experiment.yaml names HAPPO" in err
    assert "Traceback" not in err


def test_bad_override_exits_with_the_key_and_allowed_values(capsys):
    argv = ["train", str(QUICK), "--set", "training.kl_threshold=big"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {QUICK}: training.kl_threshold: 'big' (str) has the wrong type" in err
    assert cli.main(["train", str(QUICK), "--set", "training.kl_threshold=-1"]) == 2
    assert (
        "training.kl_threshold=-1 (int) is invalid: must be a number > 0" in capsys.readouterr().err
    )
    assert cli.main(["train", str(QUICK), "--set", "kl_threshold"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_tune_runs_the_search_and_reports_the_best_trial(ray_session, tmp_path, capsys):
    search = tmp_path / "search.yaml"
    search.write_text(
        "algorithm: HATRPO\n"
        "env: simple_spread_v3\n"  # 25-step episodes: one iteration reports a team return
        "env_runners: {num_env_runners: 0, num_envs_per_env_runner: 1}\n"
        "training: {train_batch_size_per_learner: 200, hidden_sizes: [16, 16]}\n"
        "search: {kl_threshold: {grid_search: [0.01, 0.02]}}\n"
        "scheduler: {type: asha, metric: team_return, mode: max, max_t: 1, grace_period: 1}\n"
        "stop: {training_iteration: 1}\n"
    )
    run_dir = tmp_path / "search"
    assert cli.main(["tune", str(search), "--run-dir", str(run_dir)]) == 0
    best = json.loads((run_dir / "best_trial.json").read_text())
    assert best["metric"] == "team_return" and best["searched"]["kl_threshold"] in (0.01, 0.02)
    assert Path(best["trial_dir"]).name.startswith("HATRPO_simple_spread_v3_")
    trials = sorted(run_dir.glob("HATRPO_*"))
    assert len(trials) == 2
    last = {
        t.name: json.loads((t / "result.json").read_text().splitlines()[-1])["team_return"]
        for t in trials
    }
    assert best["value"] == max(last.values()) == last[Path(best["trial_dir"]).name]
    assert '"searched"' in capsys.readouterr().out
