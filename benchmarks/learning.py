"""Learning curves of HATRPO, HAPPO and RLlib's PPO on MaMuJoCo (issues 6 and 16).

Each (algorithm, seed) run trains on `--task` (default HalfCheetah 2x3) with HARL's tuned
settings for it (`tune_configs/<algo>_<task>.yaml`, `obs_mode: global`; PPO as defined in
`benchmarks/baselines.py`) for `--env-steps` env steps and
evaluates every `--eval-every` env steps (and before training) with `--eval-episodes` episodes
acting with each policy's mean action (`explore: False`), on RLlib's evaluation EnvRunner in
the driver. The evaluation return is the team return (the mean over agents of their episode
returns; every agent receives the team reward) averaged over exactly that evaluation's
episodes.

Usage:
    python -m benchmarks.learning --algos PPO --env-steps 1000000 --seeds 0
    python -m benchmarks.learning --algos HATRPO HAPPO PPO --env-steps 10000000 \\
        --seeds 0 1 2 3 4 --set env_runners.num_env_runners=4 \\
        --set env_runners.num_envs_per_env_runner=5     # 16+ cores: the full reproduction
    python -m benchmarks.learning --algos HATRPO HAPPO --task walker2d_2x3 \\
        --env-steps 2000000 --out-dir benchmarks/results/walker2d_2x3_2m
    python -m benchmarks.learning --report-only        # re-draw the table and plot
    python -m benchmarks.learning --smoke --out-dir /tmp/x   # seconds: exercises the code

Outputs in `--out-dir` (default `benchmarks/results/`):
    learning/<algo>_seed<seed>.csv  one row per evaluation, written as it happens (columns
                                    `CSV_FIELDS`: algo, seed, env_steps, eval_return, ...)
    learning/checkpoints/<algo>_seed<seed>/  the run's checkpoint after each evaluation
    learning.csv, learning.png, learning.md  all runs found in learning/ (also runs of other
                                    invocations), the plot and the markdown table

A run that stopped (killed, crashed, machine gone) resumes from its last checkpoint when the
same command is run again: the rows after the checkpoint are dropped and training continues
(`--fresh` starts over). Runs of different algorithms or seeds can go in parallel processes
with the same `--out-dir`; each writes only its own files, and the combined files are redrawn
from all of them at the end of each invocation.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EVALUATION_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)

from benchmarks.baselines import (
    ALGORITHMS,
    DEFAULT_TASK,
    PPO_BASELINE,
    RESULTS_DIR,
    TASKS,
    Overrides,
    algorithm_config,
)
from benchmarks.provenance import provenance, write_provenance
from rllib_hatrpo.app.experiment import parse_override
from rllib_hatrpo.metrics import team_return
from rllib_hatrpo.operations.checkpointing import restore_path, save_checkpoint

CSV_FIELDS = [
    "algo",
    "task",
    "seed",
    "env_steps",
    "eval_return",
    "eval_episodes",
    "iteration",
    "train_return",
    "time_s",
    "target_env_steps",
]
"""Columns of the per-run and the combined CSV; `task` the env (MaMuJoCo: scenario and
agent_conf), `train_return` RLlib's smoothed training team return (exploring, last 100
episodes), `time_s` the run's wall time so far."""


def task_of(config: Any) -> str:
    """The task a config trains on: MaMuJoCo's scenario and agent_conf, else the env's name."""
    env_config = config.env_config or {}
    parts = [str(env_config[k]) for k in ("scenario", "agent_conf") if k in env_config]
    return " ".join(parts) or str(config.env)


DEFAULT_ALGOS = ("HATRPO", "HAPPO", PPO_BASELINE)

HARL_V2: dict[str, dict[str, tuple[int, int, int]]] = {
    "HalfCheetah 2x3": {"HATRPO": (1700, 2600, 5400), "HAPPO": (3000, 4500, 7000)},
    "Ant 4x2": {"HATRPO": (1600, 2250, 5000), "HAPPO": (1900, 2900, 5950)},
    "Walker2d 2x3": {"HATRPO": (1000, 1450, 3700), "HAPPO": (1300, 1300, 5400)},
    "Hopper 3x1": {"HATRPO": (1600, 3100, 3500), "HAPPO": (2300, 3200, 3500)},
}
"""HARL's published returns at 1M / 2M / 10M env steps per task (MuJoCo v2 physics; read off
HARL's JMLR curves, ±10% at 1M and 2M, ±200 at 10M; see /work/shared/reference-settings.md)."""
HARL_STEPS = (1_000_000, 2_000_000, 10_000_000)
"""The env steps HARL's figures are read at (`HARL_V2`)."""
DEFAULT_TASK_NAME = "HalfCheetah 2x3"

SMOKE_OVERRIDES: dict[str, Any] = {
    "env_runners.num_env_runners": 0,
    "env_runners.num_envs_per_env_runner": 2,
    "training.train_batch_size_per_learner": 200,
    "training.hidden_sizes": [16, 16],
}
"""`--smoke`: sampling in the driver, 2 envs x 100 steps = 200 env steps per iteration, tiny
networks."""


def evaluation_overrides(eval_every_iterations: int, episodes: int) -> dict[str, Any]:
    """The experiment's `evaluation` section for this benchmark: every N iterations on the
    driver's evaluation EnvRunner, `episodes` episodes with the mean action.

    The evaluation runs the largest number of envs (at most 20) that divides `episodes` and
    stops when exactly `episodes` episodes have ended. All MaMuJoCo HalfCheetah episodes last
    1,000 steps, so every round of envs ends together; on tasks that terminate early (Hopper,
    Walker2d, Ant) the first `episodes` to end are counted, as HARL's evaluation counts them. The
    metrics window equals the episode count, so the reported return averages exactly this
    evaluation's episodes.
    """
    envs = max(n for n in range(1, min(episodes, 20) + 1) if episodes % n == 0)
    return {
        "evaluation": {
            "evaluation_interval": eval_every_iterations,
            "evaluation_duration": episodes,
            "evaluation_duration_unit": "episodes",
            "evaluation_num_env_runners": 0,
            "evaluation_config": {
                "explore": False,
                "num_envs_per_env_runner": envs,
                "metrics_num_episodes_for_smoothing": episodes,
            },
        }
    }


def run_name(algo: str, seed: int) -> str:
    return f"{algo}_seed{seed}"


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file ([] if it does not exist)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def lifetime_env_steps(algo: Algorithm) -> int:
    return int(algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))


def evaluation_of(result: dict[str, Any]) -> tuple[float, int] | None:
    """(team return, episodes) of the evaluation in an `algo.train()` or `algo.evaluate()`
    result, or None if it holds none."""
    evaluation = result.get(EVALUATION_RESULTS, result) or {}
    runners = evaluation.get(ENV_RUNNER_RESULTS)
    if not runners:
        return None
    value = team_return({ENV_RUNNER_RESULTS: runners})
    if value is None:
        return None
    return value, int(runners.get("num_episodes", 0))


def train_one(
    algo_name: str,
    seed: int,
    *,
    env_steps: int,
    eval_every: int,
    eval_episodes: int,
    out_dir: Path,
    overrides: Overrides,
    fresh: bool,
    task: str = DEFAULT_TASK,
    log=print,
) -> list[dict[str, Any]]:
    """Trains one (algorithm, seed) run to `env_steps`, evaluating on the way; returns its rows.

    The run's CSV gets one row per evaluation as soon as it is measured, and a checkpoint is
    written after each; a second call with the same arguments resumes from that checkpoint.
    """
    name = run_name(algo_name, seed)
    csv_path = out_dir / "learning" / f"{name}.csv"
    checkpoint = out_dir / "learning" / "checkpoints" / name
    if fresh:
        csv_path.unlink(missing_ok=True)
        for path in (checkpoint, *checkpoint.parent.glob(f"{name}.*")):
            shutil.rmtree(path, ignore_errors=True)

    probe = algorithm_config(algo_name, dict(overrides), task)
    batch = int(probe.train_batch_size_per_learner)
    every_iterations = max(1, round(eval_every / batch))
    config = algorithm_config(
        algo_name,
        {**dict(overrides), "seed": seed, **evaluation_overrides(every_iterations, eval_episodes)},
        task,
    )
    algo = config.build_algo()
    try:
        rows = read_rows(csv_path)
        time_offset = 0.0
        try:
            restored = restore_path(checkpoint)
        except FileNotFoundError:
            restored = None
        if restored is not None:
            algo.restore_from_path(str(restored.resolve()))
            done = lifetime_env_steps(algo)
            rows = [r for r in rows if int(r["env_steps"]) <= done]
            time_offset = float(rows[-1]["time_s"]) if rows else 0.0
            log(f"{name}: resumed from {restored} at {done:,} env steps")
        else:
            rows = []
        write_rows(csv_path, rows)
        started = f"resumed at {lifetime_env_steps(algo):,} env steps" if rows else "started"
        write_provenance(csv_path, provenance(f"{name} {started}"), append=True)
        start = time.time()

        def record(evaluation: tuple[float, int], train_ret: float | None) -> None:
            row = {
                "algo": algo_name,
                "task": task_of(config),
                "seed": seed,
                "env_steps": lifetime_env_steps(algo),
                "eval_return": round(evaluation[0], 3),
                "eval_episodes": evaluation[1],
                "iteration": algo.iteration,
                "train_return": "" if train_ret is None else round(train_ret, 3),
                "time_s": round(time_offset + time.time() - start, 1),
                "target_env_steps": env_steps,
            }
            rows.append(row)
            with open(csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)
            save_checkpoint(algo, checkpoint)
            log(
                f"{name}: env steps {row['env_steps']:>10,} | eval return "
                f"{row['eval_return']:>9.1f} ({row['eval_episodes']} episodes) | "
                f"{row['time_s']:.0f} s"
            )

        if not rows:
            record(_require(evaluation_of(algo.evaluate()), name), None)
        while lifetime_env_steps(algo) < env_steps:
            result = algo.train()
            log(
                f"{name}: iter {algo.iteration:4d} | env steps {lifetime_env_steps(algo):>10,}"
                f"/{env_steps:,} | train return {team_return(result) or math.nan:9.1f} | "
                f"{time_offset + time.time() - start:7.0f} s"
            )
            # The result repeats the last evaluation's metrics in every iteration; RLlib
            # evaluates in the iterations that are multiples of the interval.
            if algo.iteration % every_iterations == 0:
                evaluation = evaluation_of({EVALUATION_RESULTS: result.get(EVALUATION_RESULTS)})
                record(_require(evaluation, name), team_return(result))
        if int(rows[-1]["env_steps"]) < lifetime_env_steps(algo):
            record(_require(evaluation_of(algo.evaluate()), name), None)
    finally:
        algo.stop()
    return rows


def _require(evaluation: tuple[float, int] | None, name: str) -> tuple[float, int]:
    if evaluation is None:
        raise RuntimeError(f"{name}: the evaluation reported no finished episode")
    return evaluation


def collect(out_dir: Path) -> list[dict[str, str]]:
    """Every run's rows found in `out_dir/learning/`, sorted by algorithm, seed, env steps."""
    rows = [row for path in (out_dir / "learning").glob("*.csv") for row in read_rows(path)]
    order = {name: i for i, name in enumerate(ALGORITHMS)}
    return sorted(
        rows,
        key=lambda r: (order.get(r["algo"], len(order)), int(r["seed"]), int(r["env_steps"])),
    )


def task_name(rows: Sequence[dict[str, str]]) -> str:
    """The task of `rows` (all from one task), HalfCheetah 2x3 when they do not say."""
    tasks = {r.get("task") for r in rows} - {None, ""}
    if len(tasks) > 1:
        raise ValueError(f"rows of several tasks in one report: {sorted(tasks)}")
    return tasks.pop() if tasks else DEFAULT_TASK_NAME


def harl_figures(rows: Sequence[dict[str, str]]) -> dict[str, tuple[int, int, int]]:
    """HARL's figures (`HARL_V2`) per algorithm on the task of `rows` ({} if it has none)."""
    return HARL_V2.get(task_name(rows), {})


def harl_cell(figures: dict[str, tuple[int, int, int]], algo: str) -> str:
    """A table cell of `algo`'s figures at 1M / 2M / 10M, or – where HARL has none."""
    return " / ".join(f"{x:,}" for x in figures[algo]) if algo in figures else "–"


def rows_by_seed(rows: Sequence[dict[str, str]]) -> dict[int, list[dict[str, str]]]:
    """One run's rows per seed (seeds ascending), each in the order of `rows`."""
    runs: dict[int, list[dict[str, str]]] = {}
    for r in sorted(rows, key=lambda r: int(r["seed"])):
        runs.setdefault(int(r["seed"]), []).append(r)
    return runs


def summary_table(rows: Sequence[dict[str, str]], expected: Sequence[str] = DEFAULT_ALGOS) -> str:
    """Markdown: per algorithm, its seeds, the evaluation where all its seeds have got to
    (mean ± std over seeds at the fewest env steps any seed has reached, so that runs still
    going are compared at equal length), the best evaluation, whether the runs reached their
    target, and HARL's figures at 1M / 2M / 10M env steps on the task. Algorithms of
    `expected` without rows are listed as pending."""
    figures = harl_figures(rows)
    lines = [
        "| algorithm | seeds | env steps | eval return there | best eval return | status "
        "| HARL at 1M / 2M / 10M (v2 physics) |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    order = {name: i for i, name in enumerate(ALGORITHMS)}
    algos = sorted(
        dict.fromkeys([*expected, *(r["algo"] for r in rows)]),
        key=lambda name: order.get(name, len(order)),
    )
    for algo in algos:
        mine = [r for r in rows if r["algo"] == algo]
        harl = harl_cell(figures, algo)
        if not mine:
            lines.append(f"| {algo} | – | – | – | – | pending | {harl} |")
            continue
        runs = rows_by_seed(mine)
        seeds = list(runs)
        finals = [run[-1] for run in runs.values()]
        steps = min(int(r["env_steps"]) for r in finals)
        final = [  # each seed's last evaluation within the common length
            float([r for r in run if int(r["env_steps"]) <= steps][-1]["eval_return"])
            for run in runs.values()
        ]
        spread = f" ± {statistics.stdev(final):.1f}" if len(final) > 1 else ""
        complete = all(int(r["env_steps"]) >= int(r["target_env_steps"]) for r in finals)
        status = "complete" if complete else "running or stopped"
        best = max(float(r["eval_return"]) for r in mine)
        lines.append(
            f"| {algo} | {', '.join(map(str, seeds))} | {steps:,} | "
            f"{statistics.fmean(final):.1f}{spread} | {best:.1f} | {status} | {harl} |"
        )
    return "\n".join(lines)


def milestone_table(rows: Sequence[dict[str, str]]) -> str:
    """Markdown: per algorithm, the evaluation return at 1M, 2M and 10M env steps (mean ± std
    over the seeds that evaluated there, and their count) beside HARL's figures, and the wall
    time of the runs so far."""
    figures = harl_figures(rows)
    lines = [
        "| algorithm | 1M | 2M | 10M | HARL 1M / 2M / 10M (v2 physics) | wall time per run |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for algo in dict.fromkeys(r["algo"] for r in rows):
        mine = [r for r in rows if r["algo"] == algo]
        cells = []
        for steps in HARL_STEPS:
            values = [float(r["eval_return"]) for r in mine if int(r["env_steps"]) == steps]
            spread = f" ± {statistics.stdev(values):,.0f}" if len(values) > 1 else ""
            mean = f"{statistics.fmean(values):,.0f}{spread} (n={len(values)})" if values else "–"
            cells.append(mean)
        last = [run[-1] for run in rows_by_seed(mine).values()]
        hours = ", ".join(
            f"{float(r['time_s']) / 3600:.1f} h to {int(r['env_steps']) / 1e6:g}M" for r in last
        )
        harl = harl_cell(figures, algo)
        lines.append(f"| {algo} | {' | '.join(cells)} | {harl} | {hours} |")
    return "\n".join(lines)


def harl_points(rows: Sequence[dict[str, str]]) -> dict[str, list[tuple[int, int]]]:
    """Per algorithm, HARL's (env steps, return) figures on the task of `rows` up to the runs'
    longest target: what the plot marks beside runs of that length."""
    length = max((int(r["target_env_steps"]) for r in rows), default=0)
    return {
        algo: [
            (steps, value)
            for steps, value in zip(HARL_STEPS, values, strict=True)
            if steps <= length
        ]
        for algo, values in harl_figures(rows).items()
    }


def plot(rows: Sequence[dict[str, str]], png_path: Path) -> Path:
    """Evaluation return vs env steps: one thin line per seed, a thick mean per algorithm
    and a band from the lowest to the highest seed (where all its seeds evaluated at the same
    env steps), and HARL's published figures on the task as markers, those within the runs'
    target length (a 2M-step run is drawn without HARL's 10M figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = harl_points(rows)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, algo in enumerate(dict.fromkeys(r["algo"] for r in rows)):
        color = f"C{i}"
        runs = rows_by_seed([r for r in rows if r["algo"] == algo]).values()
        curves = [{int(r["env_steps"]): float(r["eval_return"]) for r in run} for run in runs]
        for curve in curves:
            steps = sorted(curve)
            ax.plot(steps, [curve[s] for s in steps], color=color, alpha=0.35, lw=1)
        common = sorted(set.intersection(*(set(c) for c in curves)))
        means = [statistics.fmean(c[s] for c in curves) for s in common]
        seeds = f"{len(curves)} seed" + ("s" if len(curves) > 1 else "")
        ax.plot(common, means, color=color, lw=2.2, label=f"{algo} ({seeds})")
        if len(curves) > 1:
            low = [min(c[s] for c in curves) for s in common]
            high = [max(c[s] for c in curves) for s in common]
            ax.fill_between(common, low, high, color=color, alpha=0.15, lw=0)
        if markers.get(algo):
            ax.plot(
                *zip(*markers[algo], strict=True),
                ls="none",
                marker="*",
                ms=11,
                color=color,
                label=f"{algo}, HARL (v2 physics)",
            )
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation team return (mean action)")
    ax.set_title(f"MaMuJoCo {task_name(rows)} (obs_mode global)")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend()
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def report(out_dir: Path, expected: Sequence[str] = DEFAULT_ALGOS) -> str:
    """Writes learning.csv, learning.png and learning.md (the summary and the milestone table)
    from all runs; returns the summary table."""
    rows = collect(out_dir)
    write_rows(out_dir / "learning.csv", rows)
    plot(rows, out_dir / "learning.png")
    table = summary_table(rows, expected)
    (out_dir / "learning.md").write_text(
        f"MaMuJoCo {task_name(rows)}, obs_mode global, HARL's settings (tune_configs/; PPO: "
        "benchmarks/baselines.py). Evaluation: mean action, team return.\n\n"
        f"{table}\n\n{milestone_table(rows)}\n"
    )
    return table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS), choices=ALGORITHMS)
    parser.add_argument(
        "--task",
        default=DEFAULT_TASK,
        choices=TASKS,
        help="the MaMuJoCo task, from tune_configs/<algo>_<task>.yaml (default %(default)s)",
    )
    parser.add_argument("--env-steps", type=int, help="per run (default 1,000,000)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--eval-every", type=int, help="env steps between evaluations (default 100,000)"
    )
    parser.add_argument("--eval-episodes", type=int, help="per evaluation (default 40)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiment-file override for every algorithm, e.g. "
        "env_runners.num_env_runners=4 (PPO follows the HATRPO file's env and runners)",
    )
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    parser.add_argument(
        "--report-only", action="store_true", help="only redraw the combined CSV, plot, table"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: 400 env steps, 200 per iteration, 1 evaluation episode (checks code;\n"
        "--env-steps etc. still apply)",
    )
    parser.add_argument("--ray-address", default="local", help="ray.init address")
    args = parser.parse_args(argv)
    defaults = (400, 400, 1) if args.smoke else (1_000_000, 100_000, 40)
    for key, default in zip(("env_steps", "eval_every", "eval_episodes"), defaults, strict=True):
        if getattr(args, key) is None:
            setattr(args, key, default)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import ray

        overrides = dict(SMOKE_OVERRIDES if args.smoke else {})
        overrides.update(parse_override(text) for text in args.set)
        ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
        try:
            for algo in args.algos:
                for seed in args.seeds:
                    train_one(
                        algo,
                        seed,
                        env_steps=args.env_steps,
                        eval_every=args.eval_every,
                        eval_episodes=args.eval_episodes,
                        out_dir=args.out_dir,
                        overrides=overrides,
                        task=args.task,
                        fresh=args.fresh,
                        log=lambda line: print(line, flush=True),
                    )
        finally:
            ray.shutdown()
    print(report(args.out_dir, expected=args.algos))
    print(f"rows: {args.out_dir / 'learning.csv'}, plot: {args.out_dir / 'learning.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
