"""Throughput and memory of HATRPO, HAPPO and RLlib's PPO on MaMuJoCo HalfCheetah 2x3
(issues 6 and 15).

One run measures, on the same env, machine, batch and EnvRunner count:

1. The simulator layers, per task of `instruments.TASKS` (HalfCheetah 2x3, Ant 4x2, Walker2d
   2x3), random actions, 20 copies, one core, interleaved: bare physics (a Python loop of
   `mj_step` over 20 `MjData`: the ceiling, `RAW_SIMULATOR`), Gymnasium's single-agent env,
   our batched copies, the `mamujoco_v1` copies one by one (`batched: False`), and EnvPool's
   batch where `envpool` is importable (not a dependency); and the bare physics and our
   batched copies with HATRPO's policies acting at every step (`TeamEnvRunner.act`): how fast
   sampling could be with each, before the EnvRunner's rollout arrays and metrics.
2. For each algorithm (`benchmarks/baselines.py`: HATRPO and HAPPO with HARL's settings from
   `tune_configs/`, PPO the HARL-MAPPO-like baseline, PPO-default RLlib's own defaults for
   reference, HATRPO-fisher0.1 HATRPO with the Fisher-vector products on a tenth of the rows):
   `--warmup` training iterations, then `--iterations` timed ones, each preceded
   (untimed) by `--raw-steps` steps of the bare mamujoco_v1 env in every EnvRunner's process.
   The raw rate is the bare physics of the EnvRunner's own copies (`env_runner_raw_rate`).
   The host's speed drifts by up to half within minutes, so the sampling ratio divides by the
   median of these measurements, taken on the sampling cores next to the sampling. Reported:
   * whole loop: env steps sampled in the timed iterations / their wall time (`algo.train()`);
   * sampling: the same env steps / the time spent in `synchronous_parallel_sample`, which
     both RLlib's PPO and our `training_step` call once per iteration (the benchmark wraps the
     function in the algorithm's module: a timer only, nothing else changes; where an
     algorithm samples differently, the result's own sampling timer is used and the row says
     so);
   * learning: seconds per iteration in `LearnerGroup.update` (wrapped the same way);
   * peak memory: the largest sum, over the process tree, of the resident set sizes (RSS),
     sampled every `--mem-interval` seconds from before the algorithm is built until its
     last timed iteration. Each algorithm runs in its own Python subprocess with its own local
     Ray (`ray.init(address="local")`), so the tree is exactly that algorithm's driver (with
     its local learner), its EnvRunner actors, Ray's idle workers and Ray's own processes
     (GCS, raylet, agents), and nothing of the other algorithms. "algorithm processes" is the
     driver plus Ray actors (EnvRunners, learners); "all" adds Ray's processes and idle
     workers, which are the same for every algorithm. RSS counts shared pages (torch's and
     MuJoCo's libraries) once per process, as `ps` and the issue's figure do.
3. Sampling scaling: HATRPO's EnvRunners alone (`synchronous_parallel_sample` of one train
   batch, `--scaling-repeats` times after one warm-up) for every `num_env_runners` x
   `num_envs_per_env_runner` of `--scaling-runners` x `--scaling-envs` (the "auto" rollout
   fragment is batch / (runners x envs), so every call samples one train batch), with the raw
   rate measured on the EnvRunners before each call as above; and Ant 4x2 and Walker2d 2x3
   with 1 EnvRunner x 20 envs (`--other-tasks`).

Targets of issue 15, reported here and not asserted: sampling (policy forward and rollout
buffers included) ≥ 0.7x bare physics per EnvRunner core; whole loop HATRPO ≥ 3x PPO,
HATRPO-fisher0.1 ≥ 5x, HAPPO ≥ 3x; peak memory no higher than PPO's.

Usage:
    nice -n 10 python -m benchmarks.throughput            # the full run (~10 min on 2 cores)
    python -m benchmarks.throughput --smoke --out-dir /tmp/x   # seconds: exercises the code

Writes `throughput.csv` (one row per measurement, column `section`) and `throughput.md` (the
tables, the targets, the machine, its load average before and after, versions and commit) to
`--out-dir` (default `benchmarks/results/`), and prints the markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.baselines import (
    ALGORITHMS,
    HAPPO_HARL,
    PPO_DEFAULTS,
    REFERENCE,
    REPO_ROOT,
    RESULTS_DIR,
    algorithm_config,
)
from benchmarks.instruments import (
    TASKS,
    PhaseTimer,
    TreeMemory,
    env_runner_raw_rate,
    lifetime_env_steps,
    mb,
    simulator_rates,
)
from benchmarks.provenance import provenance
from benchmarks.throughput_report import DEFAULT_TASK, add_ratios, write_outputs

SECTIONS = ("simulator", "algorithm", "scaling")

SPEED_ALGORITHMS = tuple(a for a in ALGORITHMS if a != HAPPO_HARL)
"""What a run measures by default: HAPPO-harl learns differently, at HAPPO's speed."""

OTHER_TASKS_ENVS = 20
"""Env copies of the one EnvRunner sampling the tasks other than HalfCheetah 2x3."""

SMOKE_OVERRIDES: dict[str, Any] = {
    "env_runners.num_env_runners": 0,
    "env_runners.num_envs_per_env_runner": 2,
    "training.train_batch_size_per_learner": 200,
    "training.hidden_sizes": [16, 16],
}
"""`--smoke`: sampling in the driver, 200 env steps per iteration, tiny networks."""

NO_EVALUATION: dict[str, Any] = {"evaluation": {}}
"""Every measured config trains only (the experiment files evaluate every 25 iterations)."""


# --- one algorithm ---------------------------------------------------------------------------


def measure_algorithm(
    name: str,
    overrides: dict[str, Any],
    *,
    warmup: int,
    iterations: int,
    mem_interval: float,
    raw_steps: int,
) -> dict[str, Any]:
    """Builds `name`'s config, trains `warmup` + `iterations` iterations and returns the
    timed iterations' figures and the peak memory (needs Ray initialised). Before each timed
    iteration the EnvRunners measure the raw simulator rate (`raw_steps` steps, untimed)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_SAMPLING_TIMER, TIMERS

    memory = TreeMemory(mem_interval)
    memory.start()
    config = algorithm_config(name, {**overrides, **NO_EVALUATION})
    start = time.perf_counter()
    algo = config.build_algo()
    build_s = time.perf_counter() - start
    try:
        timer = PhaseTimer(algo)
        for _ in range(warmup):
            algo.train()
        timer.reset()
        steps_before = lifetime_env_steps(algo)
        iteration_s, result_sample_s, raw_rates = 0.0, 0.0, []
        for _ in range(iterations):
            raw_rates.append(env_runner_raw_rate(algo, raw_steps))
            start = time.perf_counter()
            result = algo.train()
            iteration_s += time.perf_counter() - start
            result_sample_s += float(result.get(TIMERS, {}).get(ENV_RUNNER_SAMPLING_TIMER, 0.0))
        steps = lifetime_env_steps(algo) - steps_before
        timer.restore()
        memory.stop()
    finally:
        algo.stop()
    sample_s = timer.sample_s if timer.sample_source == "wrapped" else result_sample_s
    return {
        "section": "algorithm",
        "name": name,
        "num_env_runners": config.num_env_runners,
        "num_envs_per_env_runner": config.num_envs_per_env_runner,
        "env_steps": steps,
        "seconds": round(iteration_s, 2),
        "env_steps_per_s": round(steps / iteration_s, 1),
        "iteration_s": round(iteration_s / iterations, 2),
        "sample_env_steps_per_s": round(steps / sample_s, 1) if sample_s else "",
        "raw_sim_env_steps_per_s": round(statistics.median(raw_rates), 1),
        "learn_s_per_iteration": round(timer.learn_s / iterations, 2),
        "peak_rss_algorithm_mb": mb(memory.peak_algorithm),
        "peak_rss_all_mb": mb(memory.peak_all),
        "peak_rss_driver_mb": mb(memory.peak_role.get("driver", 0)),
        "peak_rss_env_runners_mb": mb(memory.peak_role.get("env_runners", 0)),
        "build_s": round(build_s, 1),
        "timing": f"{warmup} warm-up + {iterations} timed iterations; sampling: "
        f"{timer.sample_source}; raw simulator: median of {iterations} measurements on the "
        "EnvRunners between iterations",
    }


# --- sampling scaling ------------------------------------------------------------------------


def measure_sampling(
    runners: int,
    envs: int,
    overrides: dict[str, Any],
    *,
    repeats: int,
    raw_steps: int,
    task: str = DEFAULT_TASK,
) -> dict[str, Any]:
    """HATRPO's EnvRunners sampling one train batch per call on `task` (a key of `TASKS`),
    `repeats` timed calls after one warm-up (needs Ray initialised with at least `runners`
    CPUs); before each call the EnvRunners measure the bare physics rate of their own copies
    as in :func:`measure_algorithm`."""
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    overrides = {
        **overrides,
        **NO_EVALUATION,
        **{f"env_config.{key}": value for key, value in TASKS[task].items()},
    }
    base = algorithm_config(REFERENCE, overrides)
    batch = int(base.train_batch_size_per_learner)
    config = algorithm_config(
        REFERENCE,
        {
            **overrides,
            "env_runners.num_env_runners": runners,
            "env_runners.num_envs_per_env_runner": envs,
        },
    )
    algo = config.build_algo()

    def sample() -> int:
        episodes = synchronous_parallel_sample(
            worker_set=algo.env_runner_group,
            max_env_steps=batch,
            sample_timeout_s=config.sample_timeout_s,
            _uses_new_env_runners=True,
        )
        return sum(episode.env_steps() for episode in episodes)

    try:
        sample()
        steps, seconds, raw_rates = 0, 0.0, []
        for _ in range(repeats):
            raw_rates.append(env_runner_raw_rate(algo, raw_steps))
            start = time.perf_counter()
            steps += sample()
            seconds += time.perf_counter() - start
    finally:
        algo.stop()
    return {
        "section": "scaling",
        "name": f"{REFERENCE} sampling",
        "task": task,
        "num_env_runners": runners,
        "num_envs_per_env_runner": envs,
        "env_steps": steps,
        "seconds": round(seconds, 2),
        "env_steps_per_s": round(steps / seconds, 1),
        "raw_sim_env_steps_per_s": round(statistics.median(raw_rates), 1),
        "timing": f"1 warm-up + {repeats} timed calls of synchronous_parallel_sample "
        f"({batch} env steps each), the raw simulator measured on the EnvRunners before each",
    }


# --- processes -------------------------------------------------------------------------------


@contextlib.contextmanager
def local_ray(num_cpus: int) -> Iterator[None]:
    """A Ray of this process's own (never an already running cluster); a Ray this process
    already runs is used as it is."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def job_cpus(job: dict[str, Any]) -> int:
    """The CPUs a job's local Ray offers: `num_cpus`, or more for more EnvRunners."""
    return max(job["num_cpus"], *job.get("runners", [1]))


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs one job (`{"kind": "algorithm" | "scaling", ...}`) in this process, in a local Ray."""
    if job.get("torch_threads"):
        import torch

        torch.set_num_threads(job["torch_threads"])
    with local_ray(job_cpus(job)):
        if job["kind"] == "algorithm":
            return [
                measure_algorithm(
                    job["name"],
                    job["overrides"],
                    warmup=job["warmup"],
                    iterations=job["iterations"],
                    mem_interval=job["mem_interval"],
                    raw_steps=job["raw_steps"],
                )
            ]
        grid = [(DEFAULT_TASK, r, e) for r in job["runners"] for e in job["envs"]]
        grid += [(task, 1, OTHER_TASKS_ENVS) for task in job.get("other_tasks", [])]
        return [
            measure_sampling(
                r,
                e,
                job["overrides"],
                repeats=job["repeats"],
                raw_steps=job["raw_steps"],
                task=task,
            )
            for task, r, e in grid
        ]


RESULT_PREFIX = "THROUGHPUT_RESULT "


def run_job_isolated(job: dict[str, Any], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Runs `run_job(job)` in a fresh Python process (its own Ray, its own memory)."""
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--job", json.dumps(job)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    lines = [ln for ln in process.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        log(process.stderr[-4000:])
        raise RuntimeError(f"job {job['kind']} {job.get('name', '')} failed ({process.returncode})")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--algos", nargs="+", choices=ALGORITHMS, help="default: all (smoke: not PPO-default)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations")
    parser.add_argument("--sim-steps", type=int, default=20_000)
    parser.add_argument(
        "--raw-steps",
        type=int,
        default=3_000,
        help="steps of each raw-simulator measurement on the EnvRunners, between iterations",
    )
    parser.add_argument("--scaling-runners", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--scaling-envs", nargs="*", type=int, default=[1, 4, 16, 20, 64])
    parser.add_argument(
        "--other-tasks",
        nargs="*",
        default=[t for t in TASKS if t != DEFAULT_TASK],
        choices=list(TASKS),
        help=f"tasks also sampled with 1 EnvRunner x {OTHER_TASKS_ENVS} envs",
    )
    parser.add_argument("--scaling-repeats", type=int, default=2)
    parser.add_argument("--mem-interval", type=float, default=0.5, help="seconds")
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads in each measuring process (default: torch's own, one per\n"
        "core); 1 avoids torch's thread pool stalling when other processes load the cores",
    )
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs each local Ray offers")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--note", default="", help="what else ran on the machine (goes into the report)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="one process and one Ray for all measurements (memory figures then overlap)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: tiny batch and networks, 1+1 iterations, sampling in the driver with\n"
        "1 and 2 envs, all in one process",
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.warmup, args.iterations, args.sim_steps, args.raw_steps = 1, 1, 300, 100
        args.scaling_runners, args.scaling_envs, args.scaling_repeats = [0], [1, 2], 1
        args.other_tasks = []
        args.in_process = True
        args.algos = args.algos or [a for a in SPEED_ALGORITHMS if a != PPO_DEFAULTS]
    args.algos = args.algos or list(SPEED_ALGORITHMS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.job:
        print(RESULT_PREFIX + json.dumps(run_job(json.loads(args.job))), flush=True)
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    overrides = dict(SMOKE_OVERRIDES) if args.smoke else {}
    load_before = round(os.getloadavg()[0], 2)
    log(f"raw simulator, {args.sim_steps:,} steps each")
    rows = simulator_rates(args.sim_steps, 2 if args.smoke else 20)
    jobs: list[dict[str, Any]] = [
        {
            "kind": "algorithm",
            "name": name,
            "overrides": overrides,
            "warmup": args.warmup,
            "iterations": args.iterations,
            "mem_interval": args.mem_interval,
            "raw_steps": args.raw_steps,
            "num_cpus": args.num_cpus,
            "torch_threads": args.torch_threads,
        }
        for name in args.algos
    ]
    if args.scaling_runners and args.scaling_envs:
        scaling_overrides = {k: v for k, v in overrides.items() if not k.startswith("env_runners.")}
        jobs.append(
            {
                "kind": "scaling",
                "runners": args.scaling_runners,
                "envs": args.scaling_envs,
                "other_tasks": args.other_tasks,
                "repeats": args.scaling_repeats,
                "raw_steps": args.raw_steps,
                "overrides": scaling_overrides,
                "num_cpus": args.num_cpus,
                "torch_threads": args.torch_threads,
            }
        )
    runner = run_job if args.in_process else functools.partial(run_job_isolated, log=log)
    with local_ray(max(map(job_cpus, jobs))) if args.in_process else contextlib.nullcontext():
        for job in jobs:
            log(f"{job['kind']} {job.get('name', '')}".strip())
            rows += runner(job)
    add_ratios(rows)
    note = args.note or ("smoke run" if args.smoke else "no note")
    threads = args.torch_threads or "torch's default"
    meta = provenance(f"{note}; torch threads in the driver: {threads}")
    meta["load_before"], meta["load_after"] = load_before, round(os.getloadavg()[0], 2)
    print(write_outputs(rows, meta, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
