"""wandb is optional: offline without credentials (files in the run directory), per-agent
diagnostics in every iteration's metrics, and never imported unless asked for."""

import subprocess
import sys
from pathlib import Path

import pytest

from rllib_hatrpo.app import cli, wandb_logging

QUICK = Path(__file__).resolve().parents[2] / "tune_configs" / "hatrpo_halfcheetah_2x3_quick.yaml"


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """A fresh HOME (no ~/.netrc) and no wandb variables; restored afterwards, including the
    WANDB_MODE the code under test sets."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.mark.slow
def test_offline_run_writes_its_files_into_the_run_dir(
    ray_session, no_credentials, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    argv = [
        "train", str(QUICK), "--wandb", "--run-dir", str(run_dir), "--stop-timesteps", "200",
        "--num-env-runners", "0",
        "--set", "env_runners.num_envs_per_env_runner=1",
        "--set", "training.train_batch_size_per_learner=200",
        "--set", "training.hidden_sizes=[16, 16]",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    assert f"wandb: offline run in {offline[0]}" in capsys.readouterr().out
    assert (run_dir / "wandb_run_id").read_text() in offline[0].name


def test_credentials_come_from_the_key_or_netrc(no_credentials, monkeypatch, tmp_path):
    assert not wandb_logging.has_credentials()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai login user password " + "k" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_logging.has_credentials()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not wandb_logging.has_credentials()  # the entry is for another host
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_logging.has_credentials()
    assert "mode" not in wandb_logging.init_kwargs({})  # online: nothing forced


def test_without_credentials_runs_go_offline_unless_the_user_chose(no_credentials, monkeypatch):
    assert wandb_logging.init_kwargs({"project": "p"}) == {"project": "p", "mode": "offline"}
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_logging.init_kwargs({}) == {"project": "rllib-hatrpo"}


def test_metrics_hold_env_steps_team_return_and_per_agent_diagnostics():
    row = {"iteration": 3, "env_steps": 1200, "team_return": "", "episodes": 0, "time_s": 9.0,
           "sample_s": 1.0, "learn_s": 2.0, "mean_kl": 0.009, "steps_accepted": 2}  # fmt: skip
    result = {
        "learners": {
            "agent_0": {"mean_kl": 0.008, "step_accepted": 1, "note": "text"},
            "shared_critic": {"critic_loss": 0.5},
            "__all_modules__": {"num_env_steps_trained": 1200},
        },
        "evaluation": {"team_return": 11.0},  # set by HAAlgorithm.step
    }
    metrics = wandb_logging.result_metrics(result, row)
    assert metrics["env_steps"] == 1200 and "team_return" not in metrics  # none finished yet
    assert metrics["learners/agent_0/mean_kl"] == 0.008
    assert metrics["learners/shared_critic/critic_loss"] == 0.5
    assert "learners/agent_0/note" not in metrics
    assert not any("__all_modules__" in key for key in metrics)
    assert metrics["evaluation/team_return"] == 11.0


@pytest.mark.slow
def test_nothing_imports_wandb_without_the_flag():
    code = (
        "import sys\n"
        "import rllib_hatrpo.app.cli, rllib_hatrpo.app.tuning\n"
        "from rllib_hatrpo.app.experiment import load_experiment\n"
        f"load_experiment({str(QUICK)!r}).build_config()\n"
        "assert 'wandb' not in sys.modules, 'wandb was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
