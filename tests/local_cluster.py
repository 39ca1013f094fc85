"""A two-node Ray cluster on this machine for tests, and helpers to run jobs and processes on it.

`cluster/local_two_node.sh up` starts a head node (127.0.0.2, custom resource `head`) and a
sampler node (127.0.0.3, custom resource `sampler`), one CPU each, with their own temp dirs,
free ports and auth token; the `local_cluster` fixture (module scope, registered in
conftest.py) yields it and stops it at the end, also when a test fails. Jobs are submitted with
`ray job submit`; `sampler_down` kills the sampler node as a lost machine would be, and
`sampler_up` starts a new one. The test process itself never calls `ray.init()` here, so the
`ray_session` fixture of other tests is not disturbed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
SCRIPT = CLUSTER / "local_two_node.sh"
BIN = Path(sys.executable).parent
SAMPLER = "sampler"


@dataclasses.dataclass
class LocalCluster:
    """A running two-node cluster: its state dir, environment for `ray` commands, addresses."""

    state: Path
    env: dict[str, str]  # for `ray` commands: the cluster's temp dir and auth token
    dashboard: str
    sampler_node: str
    head_node: str
    start_s: float

    def script(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`cluster/local_two_node.sh COMMAND` for this cluster (sampler-down, sampler-up)."""
        env = {**clean_env(), "LOCAL_CLUSTER_DIR": str(self.state), "RAY": str(BIN / "ray")}
        done = subprocess.run(
            ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"{command} failed:\n{done.stderr[-4000:]}"
        return done

    def sampler_down(self) -> None:
        """SIGKILL every process of the sampler node at once (a lost machine)."""
        self.script("sampler-down")

    def sampler_up(self) -> str:
        """Starts a new sampler node; returns its node id."""
        self.script("sampler-up")
        self.sampler_node = read_env_file(self.state / "env")["SAMPLER_NODE_ID"]
        return self.sampler_node


def clean_env() -> dict[str, str]:
    """This process's environment without Ray's variables (a `ray_session` may have set
    RAY_ADDRESS), with this interpreter's bin/ first on PATH (the nodes' workers use it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def read_env_file(path: Path) -> dict[str, str]:
    """The `export KEY='value'` lines the script writes, as a dict."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value.strip("'")
    return values


def _kill_groups(state: Path) -> None:
    """Last resort: SIGKILL the process groups the script recorded (by id, nothing else)."""
    for name in ("sampler.pgid", "head.pgid"):
        path = state / name
        if path.exists():
            try:
                os.killpg(int(path.read_text()), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    """A two-node cluster for the module's tests, stopped at the end (also on failure)."""
    if shutil.which("setsid") is None or not (BIN / "ray").exists():
        pytest.skip("needs setsid and the `ray` command next to this Python")
    # A short path: Ray's socket paths under it must stay below 108 characters.
    state = Path(tempfile.mkdtemp(prefix="rhc.", dir="/tmp"))
    env = {**clean_env(), "LOCAL_CLUSTER_DIR": str(state), "RAY": str(BIN / "ray")}
    try:
        start = time.monotonic()
        up = subprocess.run(
            ["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=240
        )
        start_s = time.monotonic() - start
        assert up.returncode == 0, f"the cluster did not start:\n{up.stderr[-4000:]}"
        values = read_env_file(state / "env")
        cluster = LocalCluster(
            state=state,
            env={**clean_env(), **values},
            dashboard=values["RAY_DASHBOARD_ADDRESS"],
            sampler_node=values["SAMPLER_NODE_ID"],
            head_node=values["HEAD_NODE_ID"],
            start_s=start_s,
        )
        print(f"\nlocal two-node cluster up in {start_s:.1f} s")
        yield cluster
    finally:
        try:
            subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, timeout=60)
        finally:
            _kill_groups(state)
            shutil.rmtree(state, ignore_errors=True)


def ray_cli(cluster: LocalCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`ray ARGS...` with the cluster's environment."""
    return subprocess.run(
        [str(BIN / "ray"), *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submit(
    cluster: LocalCluster,
    job_id: str,
    entrypoint: list[str],
    working_dir: Path | None = None,
    *,
    wait: bool = True,
    timeout: float = 300,
) -> tuple[subprocess.CompletedProcess, float]:
    """`ray job submit` (with `wait`, until the end of the job); its result and wall time."""
    args = ["job", "submit", "--address", cluster.dashboard, "--submission-id", job_id]
    if working_dir is not None:
        args += ["--working-dir", str(working_dir)]
    if not wait:
        args.append("--no-wait")
    start = time.monotonic()
    done = ray_cli(cluster, *args, "--", *entrypoint, timeout=timeout)
    return done, time.monotonic() - start


def job_record(cluster: LocalCluster, submission_id: str) -> dict[str, Any]:
    """The job's record in Ray's state API: status, job_id, start_time, end_time, ..."""
    out = ray_cli(cluster, "list", "jobs", "--address", cluster.dashboard, "--format", "json")
    (job,) = [j for j in json.loads(out.stdout) if j["submission_id"] == submission_id]
    return job


def wait_for_job_end(cluster: LocalCluster, submission_id: str, timeout: float) -> dict[str, Any]:
    """Polls the job until it is no longer PENDING or RUNNING (or `timeout` s); its record."""
    deadline = time.monotonic() + timeout
    while True:
        job = job_record(cluster, submission_id)
        if job["status"] not in ("PENDING", "RUNNING") or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def job_logs(cluster: LocalCluster, job_id: str) -> str:
    """The job driver's output."""
    out = ray_cli(cluster, "job", "logs", "--address", cluster.dashboard, job_id)
    return out.stdout + out.stderr


def cli_command() -> list[str]:
    """The `rllib-hatrpo` command (or, before `pip install -e .` installed it, its module)."""
    script = BIN / "rllib-hatrpo"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rllib_hatrpo.app.cli"]


def progress_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run directory's progress.csv (none before it exists)."""
    path = run_dir / "progress.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def wait_for_rows(
    run_dir: Path, rows: int, timeout: float, alive: Callable[[], bool] | None = None
) -> float:
    """Waits until progress.csv has `rows` rows; the seconds it took. `alive()` (asked every
    5 s: it may be a `ray` command) returning False, e.g. the training job ended, or the
    timeout fail the test."""
    start = asked = time.monotonic()
    while len(progress_rows(run_dir)) < rows:
        now = time.monotonic()
        assert now - start < timeout, f"no {rows} rows in {run_dir} in {timeout} s"
        if alive is not None and now - asked > 5:
            assert alive(), f"training ended before {rows} rows in {run_dir}"
            asked = now
        time.sleep(0.2)
    return time.monotonic() - start
