"""Where HATRPO's sampling time goes: py-spy on the EnvRunner while it samples (issue 6).

Builds HATRPO with HARL's HalfCheetah 2x3 settings (`tune_configs/hatrpo_halfcheetah_2x3.yaml`:
1 EnvRunner x 20 envs, 200-step fragments, `obs_mode: global`), samples one batch to warm up,
then attaches `py-spy record` to the EnvRunner actor's process for `--seconds` while the driver
keeps calling `synchronous_parallel_sample` (sampling only: no learner update in between).
With `--local` the EnvRunner is the driver's own (num_env_runners=0) and py-spy records the
driver.

Writes the raw collapsed stacks (`--raw`, py-spy's `--format raw`) and a summary (`--out`,
default `benchmarks/results/profile.txt`): the sampling rate while profiled, the share
of samples by where the leaf frame lives (simulator, torch, RLlib connectors, ...), the
functions with the most self time and those with the most inclusive time.

Usage:
    nice -n 10 python -m benchmarks.profile_sampling --seconds 30
    python -m benchmarks.profile_sampling --summarize RAW.txt   # summary of a recorded profile
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks.baselines import REFERENCE, RESULTS_DIR, algorithm_config

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("MuJoCo and the mamujoco_v1 wrapper", ("gymnasium_robotics/", "/mujoco/", "envs/mujoco/")),
    ("our env wrapper (rllib_hatrpo/envs)", ("rllib_hatrpo/envs/",)),
    ("other rllib_hatrpo code (actor module, ...)", ("rllib_hatrpo/",)),
    ("torch", ("torch/",)),
    ("RLlib connectors", ("ray/rllib/connectors/",)),
    ("RLlib episodes and EnvRunner", ("ray/rllib/env/",)),
    ("RLlib RLModule / core", ("ray/rllib/core/",)),
    ("RLlib utils (metrics, spaces, ...)", ("ray/rllib/utils/",)),
    ("other RLlib / Ray", ("ray/",)),
    ("gymnasium (vector env, spaces, wrappers)", ("gymnasium/",)),
    ("numpy", ("numpy/",)),
    ("dm-tree", ("tree/",)),
)
"""Where a leaf frame's file lives -> the category its samples count for (first match)."""

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) format: one `frame;frame;...;frame count` line per stack,
    outermost frame first. Thread and process pseudo-frames are dropped."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [
            f for f in stack.split(";") if not f.startswith(("thread ", "process ", "Thread "))
        ]
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def function_of(frame: str) -> str:
    """`sample (ray/rllib/env/x.py:12)` -> `sample (ray/rllib/env/x.py)`: a frame without its
    line number, so all lines of one function add up."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['function']} ({_short(match['file'])})"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def category_of(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match["file"] if match else frame
    for name, markers in CATEGORIES:
        if any(marker in path for marker in markers):
            return name
    return "other (Python stdlib, builtins, ...)"


def summarize(raw_text: str, top: int = 25, header: str = "") -> str:
    """Shares of samples by leaf-frame category, and the top functions by self and by
    inclusive samples, as plain text."""
    stacks = parse_raw(raw_text)
    total = sum(count for _, count in stacks)
    if not total:
        return header + "\nno samples recorded\n"
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for frames, count in stacks:
        self_time[function_of(frames[-1])] += count
        categories[category_of(frames[-1])] += count
        for function in {function_of(f) for f in frames}:
            inclusive[function] += count

    def table(counter: Counter[str], n: int) -> list[str]:
        return [f"{100 * c / total:6.1f}%  {name}" for name, c in counter.most_common(n)]

    return "\n".join(
        [
            header.rstrip(),
            f"{total:,} samples",
            "",
            "Self time by where the leaf frame lives:",
            *table(categories, len(categories)),
            "",
            f"Top {top} functions by self time:",
            *table(self_time, top),
            "",
            f"Top {top} functions by inclusive time (the function or anything it called):",
            *table(inclusive, top),
            "",
        ]
    )


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return found


def profile(seconds: int, rate: int, raw_path: Path, local: bool) -> tuple[str, str]:
    """Records the EnvRunner while the driver samples; returns (header, raw stacks)."""
    import ray
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    overrides = {"evaluation": {}, **({"env_runners.num_env_runners": 0} if local else {})}
    config = algorithm_config(REFERENCE, overrides)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    algo = config.build_algo()
    try:
        group = algo.env_runner_group
        if local:
            pid = os.getpid()
        else:
            pid = group.foreach_env_runner(lambda runner: os.getpid(), local_env_runner=False)[0]

        def sample() -> int:
            episodes = synchronous_parallel_sample(
                worker_set=group,
                max_env_steps=config.train_batch_size_per_learner,
                _uses_new_env_runners=True,
            )
            return sum(e.env_steps() for e in episodes)

        sample()
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(raw_path),
        ]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start, steps = time.perf_counter(), 0
        while spy.poll() is None:
            steps += sample()
        elapsed = time.perf_counter() - start
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {spy.stderr.read().decode()[-2000:]}")
    finally:
        algo.stop()
        ray.shutdown()
    where = "the driver (local EnvRunner)" if local else "the EnvRunner actor"
    header = (
        f"py-spy on {where} while HATRPO samples (tune_configs/hatrpo_halfcheetah_2x3.yaml: "
        f"{config.num_env_runners} EnvRunner(s) x {config.num_envs_per_env_runner} envs, "
        f"obs_mode global); {rate} Hz for {seconds} s, --nonblocking\n"
        f"sampling while profiled: {steps:,} env steps in {elapsed:.1f} s = "
        f"{steps / elapsed:,.0f} env steps/s (load average {os.getloadavg()[0]:.2f})\n"
        f"command: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(command))}\n"
    )
    return header, raw_path.read_text()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--local", action="store_true", help="sample in the driver")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "profile.txt")
    parser.add_argument("--raw", type=Path, help="default: --out with .raw.txt")
    parser.add_argument("--summarize", type=Path, help="only summarize this raw profile")
    args = parser.parse_args(argv)
    raw_path = args.raw or args.out.with_suffix(".raw.txt")
    if args.summarize:
        header, raw = f"summary of {args.summarize}\n", args.summarize.read_text()
    else:
        header, raw = profile(args.seconds, args.rate, raw_path, args.local)
    text = summarize(raw, args.top, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
