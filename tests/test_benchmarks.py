"""The benchmark scripts' code (not their figures): each `--smoke` mode runs end to end in a
subprocess and writes the files with the expected rows and columns; the pure helpers (tables,
ratios, profile summary) are checked on hand-made data."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import learning, profile_sampling, provenance, throughput_report
from benchmarks.baselines import algorithm_config
from benchmarks.instruments import RAW_SIMULATOR, TASKS

REPO = Path(__file__).resolve().parents[1]

SMOKE_ALGOS = ("HATRPO", "HAPPO", "PPO")
FISHER_VARIANT = "HATRPO-fisher0.1"


def run_script(name: str, out_dir: Path, *args: str) -> str:
    process = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--smoke", "--out-dir", str(out_dir), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return process.stdout


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_learning_smoke_writes_curves_plot_and_table(tmp_path):
    stdout = run_script("learning", tmp_path)
    rows = read_csv(tmp_path / "learning.csv")
    assert set(learning.CSV_FIELDS) <= set(rows[0])
    assert {"algo", "task", "seed", "env_steps", "eval_return"} <= set(rows[0])
    assert {r["task"] for r in rows} == {"HalfCheetah 2x3"}
    for algo in SMOKE_ALGOS:
        mine = [r for r in rows if r["algo"] == algo]
        # an evaluation before training and one at the end (400 env steps)
        assert [int(r["env_steps"]) for r in mine] == [0, 400], algo
        assert all(math.isfinite(float(r["eval_return"])) for r in mine)
        assert all(int(r["eval_episodes"]) == 1 for r in mine)
        assert (tmp_path / "learning" / f"{algo}_seed0.csv").exists()
        (provenance,) = json.loads((tmp_path / "learning" / f"{algo}_seed0.json").read_text())
        assert provenance["note"] == f"{algo}_seed0 started" and provenance["commit"]
        assert (tmp_path / "learning" / "checkpoints" / f"{algo}_seed0").is_dir()
    png = tmp_path / "learning.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "learning.md").read_text()
    assert table.count("| complete |") == len(SMOKE_ALGOS)
    assert "| algorithm | seeds | env steps |" in stdout


@pytest.mark.slow
def test_learning_smoke_on_another_task_uses_its_experiment_file(tmp_path):
    run_script("learning", tmp_path, "--algos", "HAPPO", "--task", "hopper_3x1")
    rows = read_csv(tmp_path / "learning.csv")
    assert {(r["algo"], r["task"]) for r in rows} == {("HAPPO", "Hopper 3x1")}
    table = (tmp_path / "learning.md").read_text()
    assert table.startswith("MaMuJoCo Hopper 3x1,")
    assert "| complete | 2,300 / 3,200 / 3,500 |" in table  # HARL's Hopper 3x1 HAPPO
    config = algorithm_config("HAPPO", task="hopper_3x1")
    assert config.ppo_epochs == 10 and config.env_config["scenario"] == "Hopper"


@pytest.mark.slow
def test_throughput_smoke_writes_tables(tmp_path):
    stdout = run_script("throughput", tmp_path)
    rows = read_csv(tmp_path / "throughput.csv")
    assert list(rows[0]) == throughput_report.CSV_FIELDS
    simulators = [r for r in rows if r["section"] == "simulator"]
    for task in TASKS:  # every layer of every task, each relative to its task's bare physics
        layers = {r["name"]: r for r in simulators if r["task"] == task}
        assert RAW_SIMULATOR in layers and len(layers) >= 6
        assert float(layers[RAW_SIMULATOR]["sample_vs_raw_per_runner"]) == 1.0
        for bare in (RAW_SIMULATOR, "rllib_hatrpo batched copies"):  # the policies add work
            rate = float(layers[bare]["env_steps_per_s"])
            assert float(layers[f"{bare} + policies"]["env_steps_per_s"]) < rate
        for r in layers.values():
            ratio = float(r["env_steps_per_s"]) / float(layers[RAW_SIMULATOR]["env_steps_per_s"])
            assert float(r["sample_vs_raw_per_runner"]) == pytest.approx(ratio, abs=1e-3)
    algos = {r["name"]: r for r in rows if r["section"] == "algorithm"}
    assert set(algos) == {*SMOKE_ALGOS, FISHER_VARIANT}
    for row in algos.values():
        assert int(row["env_steps"]) == 200  # one timed iteration of the smoke batch
        for key in (
            "env_steps_per_s",
            "sample_env_steps_per_s",
            "raw_sim_env_steps_per_s",
            "peak_rss_algorithm_mb",
        ):
            assert float(row[key]) > 0, key
        assert float(row["peak_rss_all_mb"]) >= float(row["peak_rss_algorithm_mb"])
        assert "sampling: wrapped" in row["timing"]
    assert float(algos["PPO"]["whole_vs_ppo"]) == 1.0
    scaling = [r for r in rows if r["section"] == "scaling"]
    assert [(r["num_env_runners"], r["num_envs_per_env_runner"]) for r in scaling] == [
        ("0", "1"),
        ("0", "2"),
    ]
    for r in scaling:  # the ratio to the raw rate measured beside the sampling
        ratio = float(r["env_steps_per_s"]) / float(r["raw_sim_env_steps_per_s"])
        assert float(r["sample_vs_raw_per_runner"]) == pytest.approx(ratio, abs=1e-3)
    markdown = (tmp_path / "throughput.md").read_text()
    assert "Targets (issue 15" in markdown and "whole loop HATRPO ≥ 3× PPO" in stdout
    (provenance,) = json.loads((tmp_path / "throughput.json").read_text())
    assert (
        provenance["command"].startswith("python")
        and "-m benchmarks.throughput" in (provenance["command"])
    )
    assert provenance["commit"] and "CPUs" in provenance["machine"]


@pytest.mark.slow
def test_profile_learner_smoke_writes_each_profile(tmp_path):
    run_script("profile_learner", tmp_path, "--updates", "3", "--algos", "HATRPO", "HAPPO")
    for name in ("hatrpo", "happo"):
        text = (tmp_path / f"profile_learner_{name}.txt").read_text()
        assert text.startswith(f"{name.upper()}: learner update on one batch, 2 timed updates")
        assert "Self CPU" in text and "aten::" in text  # the profiler's operator table
        (meta,) = json.loads((tmp_path / f"profile_learner_{name}.json").read_text())
        assert "-m benchmarks.profile_learner" in meta["command"]


def test_fisher_variant_is_hatrpo_with_only_the_fisher_fraction_changed():
    overrides = {"env_runners.num_env_runners": 0}
    reference = algorithm_config("HATRPO", overrides).to_dict()
    variant = algorithm_config(FISHER_VARIANT, overrides).to_dict()
    assert (reference["fisher_fraction"], variant["fisher_fraction"]) == (1.0, 0.1)
    assert {key for key in reference if reference[key] != variant[key]} == {"fisher_fraction"}
    assert variant["num_env_runners"] == 0  # the caller's overrides still apply


def test_learning_table_lists_pending_algorithms_and_seed_spread():
    rows = [
        {"algo": "PPO", "seed": s, "env_steps": n, "eval_return": r, "target_env_steps": 100}
        for s, n, r in (("0", "0", "1"), ("0", "100", "10"), ("1", "0", "2"), ("1", "100", "20"))
    ]
    table = learning.summary_table(rows, expected=("HATRPO", "PPO"))
    assert "| HATRPO | – | – | – | – | pending | 1,700 / 2,600 / 5,400 |" in table
    walker = [{**row, "task": "Walker2d 2x3"} for row in rows]
    assert "| HATRPO | – | – | – | – | pending | 1,000 / 1,450 / 3,700 |" in (
        learning.summary_table(walker, expected=("HATRPO", "PPO"))
    )
    with pytest.raises(ValueError, match="several tasks"):
        learning.summary_table([*walker, {**rows[0], "task": "HalfCheetah 2x3"}])
    assert "| PPO | 0, 1 | 100 | 15.0 ± 7.1 | 20.0 | complete | – |" in table
    # a seed still running: both seeds compared at the fewest env steps any has reached
    going = [
        *rows,
        {**rows[-1], "env_steps": "200", "eval_return": "90", "target_env_steps": "300"},
    ]
    going[-1]["seed"], going[-2]["target_env_steps"] = "1", "300"
    assert "| PPO | 0, 1 | 100 | 15.0 ± 7.1 | 90.0 | running or stopped | – |" in (
        learning.summary_table(going)
    )


def test_plot_marks_harls_figures_only_within_the_runs_length():
    rows = [{"algo": "HAPPO", "task": "Walker2d 2x3", "target_env_steps": "2000000"}]
    assert learning.harl_points(rows)["HAPPO"] == [(1_000_000, 1300), (2_000_000, 1300)]
    rows[0]["target_env_steps"] = "10000000"
    assert learning.harl_points(rows)["HATRPO"][-1] == (10_000_000, 3700)


def test_provenance_counts_changes_to_code_but_not_to_results(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("code.py", "benchmarks/results/run.csv"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("a")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    (tmp_path / "benchmarks/results/run.csv").write_text("b")
    assert provenance.provenance()["uncommitted_changes"] is False
    (tmp_path / "code.py").write_text("b")
    assert provenance.provenance()["uncommitted_changes"] is True


def test_provenance_names_the_settings_variables_of_the_run(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("MKL_NUM_THREADS", "RAY_worker_niceness"):
        monkeypatch.delenv(name, raising=False)
    assert provenance.provenance()["environment"] == "OMP_NUM_THREADS=1"


def test_milestone_table_averages_the_seeds_at_1m_2m_10m_beside_harl():
    rows = [
        {"algo": "HAPPO", "seed": seed, "env_steps": steps, "eval_return": ret, "time_s": t}
        for seed, steps, ret, t in (
            ("0", "1000000", "100", "900"),
            ("0", "2000000", "300", "1800"),
            ("1", "1000000", "200", "1000"),
            ("1", "1100000", "250", "1100"),
        )
    ]
    table = learning.milestone_table(rows)
    # 1M: mean 150, sample std 70.7 of (100, 200); 2M: seed 0 alone; 10M: nobody yet
    assert (
        "| HAPPO | 150 ± 71 (n=2) | 300 (n=1) | – | 3,000 / 4,500 / 7,000 "
        "| 0.5 h to 2M, 0.3 h to 1.1M |"
    ) in table


def test_throughput_ratios():
    rows = [
        {
            "section": "simulator",
            "name": RAW_SIMULATOR,
            "task": "HalfCheetah 2x3",
            "env_steps_per_s": 1000.0,
        },
        {"section": "simulator", "name": RAW_SIMULATOR, "task": "Ant 4x2", "env_steps_per_s": 500},
        {"section": "simulator", "name": "batched", "task": "Ant 4x2", "env_steps_per_s": 400.0},
        {
            "section": "algorithm",
            "name": "PPO",
            "num_env_runners": 1,
            "env_steps_per_s": 100.0,
            "sample_env_steps_per_s": 400.0,
            "peak_rss_algorithm_mb": 1000.0,
        },
        {
            "section": "algorithm",
            "name": "HATRPO",
            "num_env_runners": 1,
            "env_steps_per_s": 350.0,
            "sample_env_steps_per_s": 600.0,
            "peak_rss_algorithm_mb": 800.0,
        },
        {"section": "scaling", "num_env_runners": 2, "env_steps_per_s": 1200.0},
        {
            "section": "scaling",
            "num_env_runners": 1,
            "num_envs_per_env_runner": 20,
            "env_steps_per_s": 600.0,
            "raw_sim_env_steps_per_s": 800.0,
        },
    ]
    throughput_report.add_ratios(rows)
    assert rows[2]["sample_vs_raw_per_runner"] == 0.8  # Ant's layer against Ant's physics
    assert rows[4]["whole_vs_ppo"] == 3.5 and rows[4]["memory_vs_ppo"] == 0.8
    assert rows[4]["sample_vs_raw_per_runner"] == 0.6
    assert rows[5]["sample_vs_raw_per_runner"] == 0.6
    assert rows[6]["sample_vs_raw_per_runner"] == 0.75  # its own raw rate, not the section's
    verdicts = throughput_report.targets(rows)[2:]
    assert [line.split(" — ")[-1] for line in verdicts] == ["met"] * 3
    assert "sampling (HalfCheetah 2x3, 1 × 20" in verdicts[1] and "0.75×" in verdicts[1]


@pytest.mark.parametrize("local", [False, True])
def test_profile_summary_counts_self_and_inclusive_time(local):
    prefix = "process 1:python;" if local else ""
    raw = "\n".join(
        [
            f"{prefix}thread (0x1);run (a.py:1);step (site-packages/mujoco/x.py:5) 30",
            f"{prefix}thread (0x1);run (a.py:2);forward (site-packages/torch/nn.py:9) 10",
        ]
    )
    text = profile_sampling.summarize(raw, top=5)
    assert "40 samples" in text
    assert " 75.0%  MuJoCo and the mamujoco_v1 wrapper" in text
    assert " 75.0%  step (mujoco/x.py)" in text
    assert "100.0%  run (a.py)" in text  # inclusive: both stacks pass through run
