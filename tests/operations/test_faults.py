"""Faults during training: an EnvRunner process killed, the sampler node lost, the driver killed.

1. A killed EnvRunner (SIGKILL of its process) is restarted by Ray; the iteration that found
   it dead waits for it and samples again, so no iteration is lost or left untrained.
2. The only sampler node of a two-node cluster killed mid-run: Ray would keep the restarted
   EnvRunner pending forever (no node has `sampler` any more); training stops with an error
   naming the resource and the `rllib-hatrpo resume` command, which, once a new sampler node
   is up, continues from the last checkpoint with the same counters.
3. The `rllib-hatrpo train` process group killed: `rllib-hatrpo resume` continues from the
   checkpoint of the last completed iteration (one per iteration by default); progress.csv
   stays contiguous, without duplicates.

Every process a test starts is ended by it, also when it fails. Small MPE batches (two agents,
25-step episodes, 2 envs) keep the iterations short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from local_cluster import (
    LocalCluster,
    clean_env,
    cli_command,
    job_logs,
    job_record,
    progress_rows,
    ray_cli,
    submit,
    wait_for_job_end,
    wait_for_rows,
)
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.app import cli

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EXPERIMENT: dict[str, Any] = {
    "algorithm": "HATRPO",
    "env": "simple_spread_v3",
    "env_config": {"N": 2},
    "env_runners": {"num_env_runners": 1, "num_envs_per_env_runner": 2},
    "training": {"train_batch_size_per_learner": 200, "critic_epochs": 1, "hidden_sizes": [16]},
    "stop": {"training_iteration": 100},  # never reached: each test stops the run itself
    "seed": 0,
}


def _steps(result: dict[str, Any]) -> int:
    return int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])


def _dead(pid: int) -> bool:
    """Whether the process is gone (or a zombie its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


def _assert_contiguous(rows: list[dict[str, str]]) -> int:
    """Iterations 1..n once each, env steps growing by the same amount; returns that amount."""
    iterations = [int(r["iteration"]) for r in rows]
    assert iterations == list(range(1, len(rows) + 1)), iterations
    steps = [int(r["env_steps"]) for r in rows]
    assert steps == [steps[0] * (i + 1) for i in range(len(steps))], steps
    return steps[0]


# ---------------------------------------------------------------------------------------------
# 1. An EnvRunner process killed


def test_killed_env_runner_is_replaced_and_no_iteration_is_lost(ray_session):
    config = (
        HATRPOConfig()
        .environment("simple_spread_v3", env_config={"N": 2})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=200, critic_epochs=1, hidden_sizes=[16])
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        (pid,) = algo.env_runner_group.foreach_env_runner(
            lambda runner: os.getpid(), local_env_runner=False
        )
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _dead(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _dead(pid)
        start = time.monotonic()
        results.append(algo.train())  # finds the EnvRunner dead, waits for its restart
        recovery_s = time.monotonic() - start
        results += [algo.train() for _ in range(2)]
        (new_pid,) = algo.env_runner_group.foreach_env_runner(
            lambda runner: os.getpid(), local_env_runner=False
        )
        module_ids = algo.config.module_ids()
        runner_state = algo.env_runner_group.foreach_env_runner(
            lambda runner: {m: runner.module[m].get_state() for m in module_ids},
            local_env_runner=False,
        )[0]
        learner_weights = algo.learner_group.get_weights(module_ids=module_ids)
    finally:
        algo.stop()

    faults = [r["fault_tolerance"] for r in results]
    calls = [r["num_training_step_calls_per_iteration"] for r in results]
    print(
        f"\nrecovery iteration {recovery_s:.1f} s (others "
        f"{[round(r['time_this_iter_s'], 1) for r in results]} s); training_step calls "
        f"{calls}; fault_tolerance {faults[2]}; EnvRunner pid {pid} -> {new_pid}"
    )
    assert [r["training_iteration"] for r in results] == [1, 2, 3, 4, 5]
    steps = [_steps(r) for r in results]
    assert steps == [steps[0] * i for i in range(1, 6)], steps  # one batch per iteration
    assert calls[2] == 2 and calls[:2] + calls[3:] == [1, 1, 1, 1]  # it sampled again
    assert new_pid != pid
    assert [f["num_healthy_workers"] for f in faults] == [1, 1, 1, 1, 1]
    assert [f["num_remote_worker_restarts"] for f in faults] == [0, 0, 1, 1, 1]
    # The replacement acts with the learner's current weights (synced when it came back).
    for module in module_ids:
        for name, value in runner_state[module].items():
            np.testing.assert_array_equal(
                np.asarray(value), np.asarray(learner_weights[module][name])
            )


# ---------------------------------------------------------------------------------------------
# 2. The sampler node lost


def test_lost_sampler_node_stops_naming_the_resource_and_resume_continues(
    local_cluster: LocalCluster,
):
    experiment = local_cluster.state / "faults.yaml"
    on_samplers = {**EXPERIMENT["env_runners"], "custom_resources_per_env_runner": {"sampler": 1}}
    experiment.write_text(yaml.safe_dump({**EXPERIMENT, "env_runners": on_samplers}))
    run_dir = local_cluster.state / "lost-node-run"
    train = [*cli_command(), "train", str(experiment), "--run-dir", str(run_dir)]
    done, _ = submit(local_cluster, "lost-node", train, wait=False)
    assert done.returncode == 0, done.stderr[-3000:]

    def running() -> bool:
        return job_record(local_cluster, "lost-node")["status"] in ("PENDING", "RUNNING")

    try:
        wait_for_rows(run_dir, 2, timeout=300, alive=running)
        killed = time.monotonic()
        local_cluster.sampler_down()
        job = wait_for_job_end(local_cluster, "lost-node", timeout=240)
        failed_s = time.monotonic() - killed
    finally:
        if running():
            ray_cli(local_cluster, "job", "stop", "--address", local_cluster.dashboard, "lost-node")
    logs = job_logs(local_cluster, "lost-node")
    rows = progress_rows(run_dir)
    print(
        f"\nsampler node killed after {len(rows)} rows; job {job['status']} {failed_s:.1f} s later"
    )
    assert job["status"] == "FAILED", logs[-3000:]
    assert "error: The only remote EnvRunner of this HATRPO is lost" in logs
    assert "sampler: each EnvRunner asks for 1 but no node of the cluster has any" in logs
    assert f"continue with: rllib-hatrpo resume {run_dir}" in logs
    per_iteration = _assert_contiguous(rows)

    up = time.monotonic()
    local_cluster.sampler_up()
    up_s = time.monotonic() - up
    target = per_iteration * (len(rows) + 1)
    resume = [*cli_command(), "resume", str(run_dir), "--stop-timesteps", str(target)]
    done, resume_s = submit(local_cluster, "lost-node-resume", resume)
    logs = job_logs(local_cluster, "lost-node-resume")
    print(f"new sampler node up in {up_s:.1f} s; resume job {resume_s:.1f} s")
    assert done.returncode == 0, logs[-3000:]
    # Every row written had its checkpoint: the run goes on from the last one.
    assert f"restored iteration {len(rows)}, {per_iteration * len(rows):,} env steps" in logs
    after = progress_rows(run_dir)
    assert len(after) == len(rows) + 1
    assert _assert_contiguous(after) == per_iteration


# ---------------------------------------------------------------------------------------------
# 3. The driver killed


def _group_alive(pgid: int) -> list[str]:
    """The processes (not zombies) of a process group: `pid stat command` lines."""
    ps = subprocess.run(["ps", "-eo", "pgid=,pid=,stat=,args="], capture_output=True, text=True)
    lines = [line.split(None, 3) for line in ps.stdout.splitlines()]
    return [" ".join(p[1:]) for p in lines if int(p[0]) == pgid and not p[2].startswith("Z")]


def test_killed_driver_resumes_from_the_last_completed_iteration(ray_session, capsys):
    # Short paths: Ray's socket paths under the temp dir must stay below 108 characters.
    with tempfile.TemporaryDirectory(prefix="rhf.", dir="/tmp") as tmp:
        experiment, run_dir = Path(tmp) / "faults.yaml", Path(tmp) / "run"
        experiment.write_text(yaml.safe_dump(EXPERIMENT))
        (Path(tmp) / "ray").mkdir()
        env = {**clean_env(), "RAY_TMPDIR": str(Path(tmp) / "ray")}  # a Ray of its own
        with open(Path(tmp) / "train.log", "w") as log:
            train = subprocess.Popen(
                [*cli_command(), "train", str(experiment), "--run-dir", str(run_dir)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_rows(run_dir, 2, timeout=300, alive=lambda: train.poll() is None)
            os.killpg(train.pid, signal.SIGKILL)  # the driver and its local Ray
            train.wait(timeout=30)
            deadline = time.monotonic() + 30
            while _group_alive(train.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = _group_alive(train.pid)
        finally:
            try:
                os.killpg(train.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not left, left
        rows = progress_rows(run_dir)
        per_iteration = _assert_contiguous(rows)

        capsys.readouterr()
        target = per_iteration * (len(rows) + 1)
        assert cli.main(["resume", str(run_dir), "--stop-timesteps", str(target)]) == 0
        out = capsys.readouterr().out
        after = progress_rows(run_dir)
    restored = int(out.split("restored iteration ")[1].split(",")[0])
    print(f"\ndriver killed after {len(rows)} rows; restored iteration {restored}")
    # At most the iteration whose checkpoint the kill interrupted is redone (its row dropped).
    assert restored in (len(rows), len(rows) - 1)
    assert f"restored iteration {restored}, {per_iteration * restored:,} env steps" in out
    assert len(after) == len(rows) + 1
    assert _assert_contiguous(after) == per_iteration
