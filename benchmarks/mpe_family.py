"""HATRPO vs HAPPO vs HAA2C on MPE simple_spread at the same env steps.

Usage: python -m benchmarks.mpe_family [--env-steps 100000] [--seed 0] [--n-agents 3]
Writes benchmarks/results/mpe_family.csv (one row per algorithm and iteration) and prints a
table of the mean team return over the first and the last 5 iterations.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import ray

from benchmarks.provenance import provenance, write_provenance
from rllib_hatrpo import HAA2CConfig, HAPPOConfig, HATRPOConfig
from rllib_hatrpo.metrics import team_return

STEPS_PER_ITERATION = 2000
EPISODES_PER_ITERATION = STEPS_PER_ITERATION // 25  # simple_spread episodes last 25 steps


def run(config_cls, env_steps: int, seed: int, n_agents: int) -> list[dict]:
    config = (
        config_cls()
        .environment("simple_spread_v3", env_config={"N": n_agents})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=10)
        .training(train_batch_size_per_learner=STEPS_PER_ITERATION, hidden_sizes=[64, 64])
        .reporting(metrics_num_episodes_for_smoothing=EPISODES_PER_ITERATION)
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    rows, start = [], time.time()
    try:
        for i in range(env_steps // STEPS_PER_ITERATION):
            result = algo.train()
            rows.append(
                {
                    "algorithm": type(algo).__name__,
                    "iteration": i + 1,
                    "env_steps": (i + 1) * STEPS_PER_ITERATION,
                    "team_return": team_return(result),
                    "time_s": round(time.time() - start, 1),
                }
            )
    finally:
        algo.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-agents", type=int, default=3)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    for config_cls in (HATRPOConfig, HAPPOConfig, HAA2CConfig):
        rows += run(config_cls, args.env_steps, args.seed, args.n_agents)
    ray.shutdown()
    out = Path(__file__).parent / "results" / "mpe_family.csv"
    out.parent.mkdir(exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_provenance(out, provenance(f"simple_spread_v3 N={args.n_agents}"))
    print(f"simple_spread_v3 N={args.n_agents}, {args.env_steps:,} env steps, seed {args.seed}")
    print("| algorithm | first 5 iterations | last 5 iterations | wall time (s) |")
    print("|---|---:|---:|---:|")
    for name in ("HATRPO", "HAPPO", "HAA2C"):
        mine = [r for r in rows if r["algorithm"] == name]
        first = np.mean([r["team_return"] for r in mine[:5]])
        last = np.mean([r["team_return"] for r in mine[-5:]])
        print(f"| {name} | {first:.2f} | {last:.2f} | {mine[-1]['time_s']:.0f} |")
    print(f"rows: {out}")


if __name__ == "__main__":
    main()
