"""The `rllib-hatrpo` command: train writes a run directory, resume continues it, tune runs a
search, evaluate rolls out a checkpoint, and bad input exits with a message naming the key."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from rllib_hatrpo import cli

QUICK = Path(__file__).resolve().parents[1] / "tune_configs" / "hatrpo_halfcheetah_2x3_quick.yaml"
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


def test_bad_override_exits_with_the_key_and_allowed_values(capsys):
    argv = ["train", str(QUICK), "--set", "training.kl_threshold=big"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {QUICK}: training.kl_threshold: 'big' (str) has the wrong type" in err
    assert cli.main(["train", str(QUICK), "--set", "training.kl_threshold=-1"]) == 2
    assert "kl_threshold=-1 is invalid: must be a number > 0" in capsys.readouterr().err
    assert cli.main(["train", str(QUICK), "--set", "kl_threshold"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


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
    assert len(list(run_dir.glob("HATRPO_*"))) == 2
    assert '"searched"' in capsys.readouterr().out
