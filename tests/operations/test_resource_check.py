"""A config asking for resources the cluster never has fails fast, naming the resource, where
Ray would keep its actors pending forever: `build_algo()` (HAAlgorithm.setup checks before
creating any actor, connecting to Ray first if needed), `rllib-hatrpo train` and `tune`.

The local Ray of these tests (`ray_session`: 2 CPUs) has no `sampler` resource.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from local_cluster import clean_env

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.app import cli
from rllib_hatrpo.operations.cluster_check import (
    ResourceError,
    check_one_env_runner_fits,
    env_runner_demand,
)

pytestmark = pytest.mark.cluster

MISSING = "sampler: each EnvRunner asks for 1 but no node of the cluster has any (1 node"
EXPERIMENT = (
    "algorithm: HATRPO\n"
    "env: simple_spread_v3\n"
    "env_runners: {num_env_runners: 1, num_envs_per_env_runner: 1,"
    " custom_resources_per_env_runner: {sampler: 1}}\n"
    "training: {train_batch_size_per_learner: 200, hidden_sizes: [16]}\n"
    "stop: {training_iteration: 1}\n"
)
QUICK_S = 60  # generous for a loaded 2-core machine; Ray itself would wait forever
T = TypeVar("T")


def within(seconds: float, fn: Callable[[], T], what: str) -> T:
    """`fn()`'s result (or its exception), failing the test if it has not returned within
    `seconds`. Where the check is missing, RLlib blocks in `ray.wait` on actors Ray keeps
    pending, which no signal interrupts, so `fn` runs in a daemon thread that is left behind."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as err:  # re-raised in the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, name=f"within {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {seconds} s", pytrace=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _config(**env_runners) -> HATRPOConfig:
    return (
        HATRPOConfig()
        .environment("simple_spread_v3", env_config={"N": 2})
        .env_runners(num_envs_per_env_runner=1, **env_runners)
        .training(train_batch_size_per_learner=200, hidden_sizes=[16])
    )


def test_build_algo_fails_fast_naming_the_missing_resource(ray_session):
    config = _config(num_env_runners=1, custom_resources_per_env_runner={"sampler": 1})
    with pytest.raises(ResourceError, match=re.escape(MISSING)) as err:
        within(QUICK_S, config.build_algo, "build_algo()")
    assert "sampler: the config asks for 1 (1 EnvRunner x 1) but the cluster has 0" in str(
        err.value
    )
    # Too many EnvRunners for the cluster's CPUs: named too (3 x 1 CPU > 2).
    with pytest.raises(ResourceError, match=r"CPU: the config asks for 3 \(3 EnvRunners x 1\)"):
        within(QUICK_S, _config(num_env_runners=3).build_algo, "build_algo()")


def test_one_env_runner_check_during_training(ray_session):
    check_one_env_runner_fits(env_runner_demand(_config(num_env_runners=5)))  # fits: no error
    with pytest.raises(ResourceError, match=re.escape(MISSING)):
        check_one_env_runner_fits(
            env_runner_demand(
                _config(num_env_runners=1, custom_resources_per_env_runner={"sampler": 1})
            )
        )


def test_cli_train_and_tune_exit_2_naming_the_resource(ray_session, tmp_path, capsys):
    experiment = tmp_path / "needs_sampler.yaml"
    experiment.write_text(EXPERIMENT)
    train = ["train", str(experiment), "--run-dir", str(tmp_path / "run")]
    assert within(QUICK_S, lambda: cli.main(train), "rllib-hatrpo train") == 2
    assert f"error: {MISSING}" in capsys.readouterr().err
    assert not (tmp_path / "run" / "progress.csv").exists()

    search = tmp_path / "search.yaml"
    search.write_text(EXPERIMENT + "search: {kl_threshold: {grid_search: [0.01, 0.02]}}\n")
    tune = ["tune", str(search), "--run-dir", str(tmp_path / "search")]
    assert within(QUICK_S, lambda: cli.main(tune), "rllib-hatrpo tune") == 2
    err = capsys.readouterr().err
    assert "error: sampler: each EnvRunner asks for 1 but no node" in err
    assert not list((tmp_path / "search").glob("HATRPO_*"))  # no trial was started


BUILD_WITHOUT_RAY = textwrap.dedent(
    """
    import ray
    from rllib_hatrpo import HATRPOConfig
    from rllib_hatrpo.operations.cluster_check import ResourceError

    config = (
        HATRPOConfig()
        .environment("simple_spread_v3")
        .env_runners(num_env_runners=1, custom_resources_per_env_runner={"sampler": 1})
    )
    assert not ray.is_initialized()
    try:
        config.build_algo()
    except ResourceError as err:
        print("ray initialized:", ray.is_initialized())
        print(err)
    """
)


@pytest.mark.slow
def test_build_algo_without_ray_connects_as_rllib_would_then_fails_fast():
    # A fresh interpreter with a Ray of its own (its own temp dir: never another's cluster).
    with tempfile.TemporaryDirectory(prefix="rhr.", dir="/tmp") as tmp:
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", BUILD_WITHOUT_RAY],
            env={**clean_env(), "RAY_TMPDIR": tmp},
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=180,
        )
        wall_s = time.monotonic() - start
    print(f"\nbuild without Ray: {wall_s:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ray initialized: True" in done.stdout
    assert MISSING in done.stdout
