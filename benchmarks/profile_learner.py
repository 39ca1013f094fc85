"""Where the learner's time goes: torch's profiler on HATRPO's and HAPPO's update (issue 15).

Builds each algorithm from its experiment file with HARL's HalfCheetah 2x3 settings
(`benchmarks.baselines`: 4,000 env steps per iteration, `obs_mode: global`), samples one batch
in the driver (`num_env_runners: 0`), then runs `--updates` learner updates on that batch: the
first untimed, the others timed, the last one under `torch.profiler`. Each update changes the
weights, so the later ones step from where the earlier left off, as in training.

Writes `profile_learner_<algorithm>.txt` (the median seconds per update and the profiler's
operators by self CPU time) with its provenance JSON beside it, to `--out-dir` (default
`benchmarks/results/`).

Usage:
    nice -n 10 python -m benchmarks.profile_learner               # HATRPO, HAPPO, HATRPO-fisher0.1
    python -m benchmarks.profile_learner --smoke --out-dir /tmp/x  # seconds: exercises the code
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from benchmarks.baselines import RESULTS_DIR, algorithm_config
from benchmarks.provenance import provenance, write_provenance

DEFAULT_ALGOS = ("HATRPO", "HAPPO", "HATRPO-fisher0.1")
SMOKE_OVERRIDES: dict[str, Any] = {
    "env_runners.num_envs_per_env_runner": 2,
    "training.train_batch_size_per_learner": 200,
    "training.hidden_sizes": [16, 16],
}
"""`--smoke`: a 200-step batch and tiny networks."""


def profile_updates(name: str, updates: int, smoke: bool) -> tuple[list[float], str]:
    """Seconds of each timed learner update of `name` on one sampled batch, and the profiler's
    operator table of the last one."""
    from torch.profiler import ProfilerActivity, profile

    overrides = {
        "env_runners.num_env_runners": 0,
        "evaluation": {},
        **(SMOKE_OVERRIDES if smoke else {}),
    }
    config = algorithm_config(name, overrides)
    algo = config.build_algo()
    try:
        fragments = algo.env_runner.sample(
            num_timesteps=config.train_batch_size_per_learner, explore=True
        )
        order = algo.config.module_ids()

        def update() -> None:
            algo.learner_group.update(episodes=fragments, timesteps={}, agent_order=order)

        update()  # warm-up: allocations, first-call overheads
        seconds = []
        for _ in range(updates - 2):
            start = time.perf_counter()
            update()
            seconds.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            update()
            seconds.append(time.perf_counter() - start)
    finally:
        algo.stop()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    return seconds, table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS))
    parser.add_argument("--updates", type=int, default=7, help="one warm-up, then timed ones")
    parser.add_argument("--smoke", action="store_true", help="a tiny batch and networks")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args(argv)
    if args.updates < 2:
        parser.error(f"--updates {args.updates} is invalid: must be an integer >= 2")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = provenance(args.note)
    ray.init(include_dashboard=False, log_to_driver=False)
    for name in args.algos:
        seconds, table = profile_updates(name, args.updates, args.smoke)
        path = args.out_dir / f"profile_learner_{name.lower()}.txt"
        path.write_text(
            f"{name}: learner update on one batch, {len(seconds)} timed updates, median "
            f"{statistics.median(seconds):.3f} s (each: {', '.join(f'{s:.3f}' for s in seconds)})"
            f"\ncommit {meta['commit']}, {meta['machine']}\n\n{table}\n"
        )
        write_provenance(path, meta)
        print(path.read_text().split("\n")[0], flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
