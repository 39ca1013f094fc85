"""The training loop of `rllib-hatrpo train` and `resume`, and the run directory it writes.

The loop prints one progress line per iteration (env steps, team return, sampling and learning
seconds, elapsed and estimated time left) and writes into the run directory:
`progress.csv` (the learning curve, one row per iteration), `checkpoint/` (atomically, every
`checkpoint_every` iterations and at the end), `learning_curve.png` (env steps vs team return)
and `summary.json`. A resumed run continues the same files: rows after the restored iteration
are dropped (they were never checkpointed) and the clock goes on from the last kept row.

Each iteration's row is written before its checkpoint, so after a crash at any moment the
rows kept on resume are exactly the checkpointed iterations: contiguous, no duplicates. With
the default `checkpoint_every=1` a crash loses at most the iteration it interrupted (and
that iteration's row, if it was written before its checkpoint completed).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    TIMERS,
)

from rllib_hatrpo.metrics import TEAM_RETURN, ProgressColumn
from rllib_hatrpo.operations.checkpointing import CHECKPOINT_DIR, save_checkpoint

BASE_FIELDS = [
    "iteration",
    "env_steps",
    TEAM_RETURN,
    "episodes",
    "time_s",
    "sample_s",
    "learn_s",
]
"""The progress.csv columns of every algorithm; its learner's `PROGRESS_COLUMNS` follow."""

PROGRESS_CSV = "progress.csv"
LEARNING_CURVE_PNG = "learning_curve.png"
SUMMARY_JSON = "summary.json"


def progress_columns(config: AlgorithmConfig) -> dict[str, ProgressColumn]:
    """The columns the algorithm's learner adds to progress.csv (e.g. HATRPO's accepted steps,
    HAPPO's entropy)."""
    return dict(getattr(config.learner_class, "PROGRESS_COLUMNS", {}))


def progress_row(
    result: dict[str, Any], elapsed: float, columns: Mapping[str, ProgressColumn]
) -> dict[str, Any]:
    """One CSV row of the learning curve from an `algo.train()` result; a learner column is
    empty when no module reported its key."""
    timers = result.get(TIMERS, {})
    ret = result.get(TEAM_RETURN, math.nan)
    row = {
        "iteration": result["training_iteration"],
        "env_steps": int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME]),
        TEAM_RETURN: "" if math.isnan(ret) else round(ret, 3),
        "episodes": int(result[ENV_RUNNER_RESULTS].get("num_episodes_lifetime", 0)),
        "time_s": round(elapsed, 2),
        "sample_s": round(float(timers.get(ENV_RUNNER_SAMPLING_TIMER, 0.0)), 3),
        "learn_s": round(float(timers.get(LEARNER_UPDATE_TIMER, 0.0)), 3),
    }
    modules = [m for m in result.get(LEARNER_RESULTS, {}).values() if isinstance(m, Mapping)]
    for name, column in columns.items():
        values = [float(m[column.key]) for m in modules if column.key in m]
        if not values:
            row[name] = ""
        elif column.reduce == "count":
            row[name] = sum(1 for v in values if v)
        else:
            row[name] = round(sum(values) / len(values), 6)
    return row


def progress_fraction(stop: Mapping[str, int], env_steps: int, iteration: int) -> float:
    """How far the run is towards its nearest stop criterion (1.0 = stop)."""
    reached = {"num_env_steps_sampled_lifetime": env_steps, "training_iteration": iteration}
    return max(reached[key] / max(target, 1) for key, target in stop.items())


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _keep_rows_until(path: Path, iteration: int) -> float:
    """Drops the rows of `path` after `iteration`; returns the kept rows' last `time_s`."""
    if not path.exists():
        return 0.0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if int(row["iteration"]) <= iteration]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(rows)
    return float(rows[-1]["time_s"]) if rows else 0.0


def train(
    algo: Algorithm,
    run_dir: Path,
    stop: Mapping[str, int],
    checkpoint_every: int = 1,
    log: Callable[[str], None] | None = None,
    on_result: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Trains until a `stop` criterion is met, logging progress and writing the run directory.

    Args:
        algo: A built (or restored) algorithm; a restored one continues its counters.
        run_dir: Where progress.csv, checkpoint/, learning_curve.png and summary.json go.
        stop: `{"num_env_steps_sampled_lifetime": N, "training_iteration": M}`, either or both.
        checkpoint_every: Iterations between checkpoints (one is always written at the end).
        log: Prints a progress line (default: print).
        on_result: Called with each `algo.train()` result and its CSV row (e.g. wandb).

    Returns:
        The summary also written to summary.json: the last CSV row, the latest team return and
        the paths of the run directory's files.
    """
    log = log or functools.partial(print, flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    csv_path = run_dir / PROGRESS_CSV
    time_offset = _keep_rows_until(csv_path, algo.iteration)
    start = time.time()
    last: dict[str, Any] = {}
    latest_return: Any = "n/a"
    columns = progress_columns(algo.config)
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BASE_FIELDS + list(columns))
        if f.tell() == 0:
            writer.writeheader()
        while True:
            result = algo.train()
            elapsed = time_offset + time.time() - start
            last = progress_row(result, elapsed, columns)
            writer.writerow(last)
            f.flush()
            if on_result is not None:
                on_result(result, last)
            if last[TEAM_RETURN] != "":
                latest_return = last[TEAM_RETURN]
            done_fraction = progress_fraction(stop, last["env_steps"], last["iteration"])
            left = elapsed / max(done_fraction, 1e-9) * max(1.0 - done_fraction, 0.0)
            target = stop.get("num_env_steps_sampled_lifetime")
            log(
                f"iter {last['iteration']:4d} | env steps {last['env_steps']:>10,}"
                + (f"/{target:,}" if target else "")
                + f" | return {latest_return:>9} | sample {last['sample_s']:.1f}s "
                f"learn {last['learn_s']:.1f}s | elapsed {_clock(elapsed)} | left {_clock(left)}"
            )
            done = done_fraction >= 1.0
            if done or last["iteration"] % checkpoint_every == 0:
                save_checkpoint(algo, run_dir / CHECKPOINT_DIR)
            if done:
                break
    summary = {
        **last,
        TEAM_RETURN: latest_return,
        "run_dir": str(run_dir),
        "checkpoint": str(run_dir / CHECKPOINT_DIR),
        "progress": str(csv_path),
        "learning_curve": str(plot_learning_curve(csv_path, run_dir / LEARNING_CURVE_PNG)),
    }
    (run_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    return summary


def plot_learning_curve(csv_path: Path, png_path: Path) -> Path:
    """Plots env steps vs team return from progress.csv into a PNG (matplotlib, Agg backend:
    no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        points = [
            (int(row["env_steps"]), float(row[TEAM_RETURN]))
            for row in csv.DictReader(f)
            if row[TEAM_RETURN] != ""
        ]
    fig, ax = plt.subplots(figsize=(7, 4))
    if points:
        steps, returns = zip(*points, strict=True)
        ax.plot(steps, returns, marker="." if len(points) < 50 else None)
    else:
        ax.text(0.5, 0.5, "no episode finished yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel("env steps")
    ax.set_ylabel("team return (mean over recent episodes)")
    ax.set_title(png_path.parent.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
