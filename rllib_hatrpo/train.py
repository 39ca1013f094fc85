"""Train from the command line: `python -m rllib_hatrpo.train` (what `make train` runs).

Starts an embedded local Ray, trains HATRPO on MaMuJoCo (HalfCheetah 2x3 by default), prints
one progress line per iteration, and writes into the run directory it announces:
`progress.csv` (the learning curve), `checkpoint/` (the latest checkpoint, written atomically
every `--checkpoint-every` iterations and at the end) and `summary.json`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    TIMERS,
)

from rllib_hatrpo.checkpointing import save_checkpoint

CSV_FIELDS = [
    "iteration",
    "env_steps",
    "team_return",
    "episodes",
    "time_s",
    "sample_s",
    "learn_s",
    "mean_kl",
    "steps_accepted",
]


def team_return(result: dict[str, Any]) -> float | None:
    """Mean episode return of the team (mean over agents of their returns: the team reward)."""
    per_agent = result.get(ENV_RUNNER_RESULTS, {}).get("agent_episode_returns_mean")
    if not per_agent:
        return None
    value = float(sum(per_agent.values()) / len(per_agent))
    return None if math.isnan(value) else value


def progress_row(result: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """One CSV row of the learning curve from an `algo.train()` result."""
    learners = result.get("learners", {})
    agents = [v for k, v in learners.items() if isinstance(v, dict) and "mean_kl" in v]
    timers = result.get(TIMERS, {})
    ret = team_return(result)
    return {
        "iteration": result["training_iteration"],
        "env_steps": int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME]),
        "team_return": "" if ret is None else round(ret, 3),
        "episodes": int(result[ENV_RUNNER_RESULTS].get("num_episodes_lifetime", 0)),
        "time_s": round(elapsed, 2),
        "sample_s": round(float(timers.get(ENV_RUNNER_SAMPLING_TIMER, 0.0)), 3),
        "learn_s": round(float(timers.get(LEARNER_UPDATE_TIMER, 0.0)), 3),
        "mean_kl": round(sum(a["mean_kl"] for a in agents) / max(len(agents), 1), 6),
        "steps_accepted": int(sum(a["step_accepted"] for a in agents)),
    }


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(
    algo: Algorithm,
    run_dir: Path,
    stop_env_steps: int,
    checkpoint_every: int = 10,
    log: Any = None,
) -> dict[str, Any]:
    """Trains until `stop_env_steps`, logging progress and writing the run directory."""
    log = log or functools.partial(print, flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    last: dict[str, Any] = {}
    latest_return = "n/a"
    with open(run_dir / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        while True:
            result = algo.train()
            elapsed = time.time() - start
            last = progress_row(result, elapsed)
            writer.writerow(last)
            f.flush()
            steps = last["env_steps"]
            left = elapsed / max(steps, 1) * max(stop_env_steps - steps, 0)
            if last["team_return"] != "":
                latest_return = last["team_return"]
            log(
                f"iter {last['iteration']:4d} | env steps {steps:>10,}/{stop_env_steps:,} | "
                f"return {latest_return:>9} | sample {last['sample_s']:.1f}s "
                f"learn {last['learn_s']:.1f}s | elapsed {_clock(elapsed)} | left {_clock(left)}"
            )
            done = steps >= stop_env_steps
            if done or last["iteration"] % checkpoint_every == 0:
                save_checkpoint(algo, run_dir / "checkpoint")
            if done:
                break
    summary = {
        **last,
        "team_return": latest_return,
        "run_dir": str(run_dir),
        "checkpoint": str(run_dir / "checkpoint"),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m rllib_hatrpo.train", description=__doc__)
    parser.add_argument("--scenario", default="HalfCheetah")
    parser.add_argument("--agent-conf", default="2x3")
    parser.add_argument("--obs-mode", default="local", choices=["local", "global"])
    parser.add_argument("--env-steps", type=int, default=200_000, help="stop after this many")
    parser.add_argument("--num-env-runners", type=int, default=1)
    parser.add_argument("--num-envs-per-env-runner", type=int, default=20)
    parser.add_argument("--kl-threshold", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    import ray

    from rllib_hatrpo import HATRPOConfig

    run_dir = args.run_dir or Path("runs") / (
        f"hatrpo-{args.scenario}-{args.agent_conf}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    config = (
        HATRPOConfig()
        .environment(
            "mamujoco",
            env_config={
                "scenario": args.scenario,
                "agent_conf": args.agent_conf,
                "obs_mode": args.obs_mode,
            },
        )
        .env_runners(
            num_env_runners=args.num_env_runners,
            num_envs_per_env_runner=args.num_envs_per_env_runner,
        )
        .training(kl_threshold=args.kl_threshold)
        .debugging(seed=args.seed)
    )
    print(f"run directory: {run_dir.resolve()}", flush=True)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        algo = config.build_algo()
        summary = train(algo, run_dir, args.env_steps, args.checkpoint_every)
        algo.stop()
    finally:
        ray.shutdown()
    print(
        f"done: {summary['env_steps']:,} env steps in {_clock(summary['time_s'])}, "
        f"final team return {summary['team_return']}; curve {run_dir / 'progress.csv'}, "
        f"checkpoint {run_dir / 'checkpoint'}",
        flush=True,
    )
    return summary


if __name__ == "__main__":
    main()
