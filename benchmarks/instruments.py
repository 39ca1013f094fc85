"""What `benchmarks.throughput` measures with: the raw simulator's rate (in this process and in
each EnvRunner's), the peak memory of a process tree, and the seconds an algorithm spends
sampling and learning."""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

RAW_SIMULATOR = "mamujoco_v1 HalfCheetah 2x3 (bare parallel env)"
"""The simulator row the sampling ratios are computed against."""


# --- raw simulator ---------------------------------------------------------------------------


def multi_agent_seconds(env: Any, space_of: Callable[[str], Any], steps: int, seed: int) -> float:
    """Seconds `env` (a parallel env) takes for `steps` steps with uniformly random actions,
    drawn before timing; resets after an episode end are timed."""
    import numpy as np

    agents = list(env.possible_agents)
    spaces = {a: space_of(a) for a in agents}
    rng = np.random.default_rng(seed)
    actions = {
        a: rng.uniform(s.low, s.high, (steps, *s.shape)).astype(s.dtype) for a, s in spaces.items()
    }
    env.reset(seed=seed)
    start = time.perf_counter()
    for t in range(steps):
        _, _, terminated, truncated, _ = env.step({a: actions[a][t] for a in agents})
        if any(terminated.values()) or any(truncated.values()):
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


def raw_simulator_rate(steps: int, seed: int = 0) -> float:
    """Env steps per second of :data:`RAW_SIMULATOR` in this process, now."""
    from gymnasium_robotics import mamujoco_v1

    bare = mamujoco_v1.parallel_env("HalfCheetah", "2x3")
    return steps / multi_agent_seconds(bare, bare.action_space, steps, seed)


def simulator_rates(steps: int, seed: int = 0) -> list[dict[str, Any]]:
    """Env steps per second with random actions for the three simulator layers (see the
    module docstring); each env is reset whenever its episode ends, and resets are timed."""
    import gymnasium as gym
    import numpy as np

    from rllib_hatrpo.envs.mamujoco import make_mamujoco_env

    def single_agent() -> float:
        env = gym.make("HalfCheetah-v5")
        space = env.action_space
        rng = np.random.default_rng(seed)
        actions = rng.uniform(space.low, space.high, (steps, *space.shape)).astype(space.dtype)
        env.reset(seed=seed)
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        elapsed = time.perf_counter() - start
        env.close()
        return elapsed

    ours = make_mamujoco_env({"scenario": "HalfCheetah", "agent_conf": "2x3", "obs_mode": "global"})
    rates = {
        "gymnasium HalfCheetah-v5 (single agent)": steps / single_agent(),
        RAW_SIMULATOR: raw_simulator_rate(steps, seed),
        "rllib_hatrpo mamujoco env (obs_mode global)": steps
        / multi_agent_seconds(ours, ours.get_action_space, steps, seed),
    }
    return [
        {
            "section": "simulator",
            "name": name,
            "env_steps": steps,
            "seconds": round(steps / rate, 3),
            "env_steps_per_s": round(rate, 1),
            "timing": "perf_counter around env.step (random actions, one core)",
        }
        for name, rate in rates.items()
    ]


def env_runner_raw_rate(algo: Any, steps: int) -> float:
    """:func:`raw_simulator_rate` measured in every EnvRunner's process at once (in the driver
    when it samples itself), averaged: the ceiling of each sampling core at this moment."""
    group = algo.env_runner_group
    if group.num_remote_env_runners() == 0:
        return raw_simulator_rate(steps)
    rates = group.foreach_env_runner(
        lambda _runner: raw_simulator_rate(steps), local_env_runner=False
    )
    return sum(rates) / len(rates)


# --- memory of the process tree --------------------------------------------------------------


def _role(process: Any, driver_pid: int) -> str:
    """driver, env_runners, learners, actors (other Ray actors), ray_idle or ray_system."""
    if process.pid == driver_pid:
        return "driver"
    command = " ".join(process.cmdline())
    if not command.startswith("ray::"):
        return "ray_system"  # gcs_server, raylet, dashboard and log-monitor processes
    if "IDLE" in command:
        return "ray_idle"
    if "EnvRunner" in command:
        return "env_runners"
    if "Learner" in command:
        return "learners"
    if "DashboardAgent" in command or "RuntimeEnvAgent" in command:
        return "ray_system"
    return "actors"


ALGORITHM_ROLES = ("driver", "env_runners", "learners", "actors")


class TreeMemory(threading.Thread):
    """Samples the RSS of this process and all its descendants every `interval` seconds and
    keeps the peaks: of the whole tree, of the algorithm's processes (`ALGORITHM_ROLES`), and
    of each role. Uses psutil (Ray vendors it; `import ray` puts it on the path)."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        import psutil
        import ray  # noqa: F401  (ray/thirdparty_files holds psutil)

        self._psutil = psutil
        self.interval = interval
        self.peak_all = 0
        self.peak_algorithm = 0
        self.peak_role: dict[str, int] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        psutil = self._psutil
        me = psutil.Process()
        sums: dict[str, int] = {}
        for process in [me, *me.children(recursive=True)]:
            try:
                role = _role(process, me.pid)
                rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            sums[role] = sums.get(role, 0) + rss
        self.peak_all = max(self.peak_all, sum(sums.values()))
        self.peak_algorithm = max(
            self.peak_algorithm, sum(sums.get(role, 0) for role in ALGORITHM_ROLES)
        )
        for role, value in sums.items():
            self.peak_role[role] = max(self.peak_role.get(role, 0), value)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def mb(n_bytes: int) -> float:
    """Bytes in MiB, to one decimal."""
    return round(n_bytes / 2**20, 1)


# --- phase timers ----------------------------------------------------------------------------


class PhaseTimer:
    """Accumulates the seconds an algorithm spends sampling and learning.

    Wraps `synchronous_parallel_sample` in the module that defines the algorithm's
    `training_step` (RLlib's PPO and our `HAAlgorithm` both call it once per iteration) and the
    algorithm's `learner_group.update`. `sample_source` says whether the wrap took ("wrapped")
    or the algorithm samples some other way ("result timer": the caller falls back on the
    result's `timers/env_runner_sampling_timer`).
    """

    def __init__(self, algo: Any):
        self.sample_s = 0.0
        self.learn_s = 0.0
        self._undo: list[Callable[[], None]] = []
        module = sys.modules[type(algo).training_step.__module__]
        original_sample = getattr(module, "synchronous_parallel_sample", None)
        self.sample_source = "wrapped" if original_sample is not None else "result timer"
        if original_sample is not None:
            module.synchronous_parallel_sample = self._timed(original_sample, "sample_s")
            self._undo.append(
                lambda: setattr(module, "synchronous_parallel_sample", original_sample)
            )
        group = algo.learner_group
        group.update = self._timed(group.update, "learn_s")
        self._undo.append(lambda: vars(group).pop("update", None))

    def _timed(self, function: Callable[..., Any], field: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self, field, getattr(self, field) + time.perf_counter() - start)

        return timed

    def reset(self) -> None:
        self.sample_s = self.learn_s = 0.0

    def restore(self) -> None:
        for undo in self._undo:
            undo()


def lifetime_env_steps(algo: Any) -> int:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    return int(algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
