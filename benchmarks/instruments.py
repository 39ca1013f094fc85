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

RAW_SIMULATOR = "bare physics: mj_step loop over the copies' MjData"
"""The simulator row the sampling ratios are computed against: a Python loop of MuJoCo's
`mj_step` (the task's frame skip) over as many `MjData` as the EnvRunner has env copies, with
uniformly random controls over the actuators' range (as the other layers' random actions),
nothing else: the ceiling of a sampling core."""

TASKS: dict[str, dict[str, str]] = {
    "HalfCheetah 2x3": {"scenario": "HalfCheetah", "agent_conf": "2x3"},
    "Ant 4x2": {"scenario": "Ant", "agent_conf": "4x2"},
    "Walker2d 2x3": {"scenario": "Walker2d", "agent_conf": "2x3"},
}
"""The tasks whose simulator layers and sampling are reported (`obs_mode: global`)."""


# --- raw simulator ---------------------------------------------------------------------------


def random_actions(spaces: dict[str, Any], steps: int, num_envs: int, seed: int) -> list[dict]:
    """`steps` batches of uniformly random actions per agent (rows = copies), drawn ahead."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        {a: rng.uniform(s.low, s.high, (num_envs, *s.shape)) for a, s in spaces.items()}
        for _ in range(steps)
    ]


def raw_simulator_rate(
    steps: int,
    num_envs: int = 20,
    scenario: str = "HalfCheetah",
    per_step: Callable[[], Any] | None = None,
) -> float:
    """Env steps per second of :data:`RAW_SIMULATOR` for `num_envs` copies of `scenario`'s
    Gymnasium v5 model in this process, now (`steps` env steps in all); with `per_step`, that
    function is called (and timed) once per step of the copies as well."""
    import gymnasium as gym
    import mujoco
    import numpy as np

    task = gym.make(f"{scenario}-v5").unwrapped
    task.reset(seed=0)
    model, frame_skip = task.model, task.frame_skip
    datas = [mujoco.MjData(model) for _ in range(num_envs)]
    for data in datas:
        data.qpos[:], data.qvel[:] = task.data.qpos, task.data.qvel
    rounds = max(1, steps // num_envs)
    low, high = model.actuator_ctrlrange.T
    controls = np.random.default_rng(0).uniform(low, high, (rounds, num_envs, model.nu))
    start = time.perf_counter()
    for round_controls in controls:
        for data, control in zip(datas, round_controls, strict=True):
            data.ctrl[:] = control
            mujoco.mj_step(model, data, nstep=frame_skip)
        if per_step is not None:
            per_step()
    elapsed = time.perf_counter() - start
    task.close()
    return rounds * num_envs / elapsed


def vector_env_seconds(env: Any, actions: list[dict]) -> float:
    """Seconds `env` (a `TeamVectorEnv`-like batch of copies) takes for the steps of
    `actions`; episode ends reset inside the step, and are timed."""
    env.reset(seed=0)
    start = time.perf_counter()
    for batch in actions:
        env.step(batch)
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


def simulator_rates(steps: int, num_envs: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Env steps per second with random actions, one core, for each task of :data:`TASKS`:
    bare physics (:data:`RAW_SIMULATOR`), Gymnasium's single-agent env, our batched MaMuJoCo
    copies, the `mamujoco_v1` copies stepped one by one (`batched: False`), and EnvPool's
    single-agent batch where `envpool` is importable; and the bare physics and our batched
    copies each with HATRPO's policies acting at every step (the bounds of an EnvRunner's
    sampling with that simulator layer). Interleaved: one round over the layers,
    twice, the faster of the two kept (the machine's speed drifts within minutes)."""
    rows = []
    for task_name, task in TASKS.items():
        best: dict[str, float] = {}
        layers = _simulator_layers(task, steps, num_envs, seed)
        for _ in range(2):
            for name, rate in layers.items():
                best[name] = max(best.get(name, 0.0), rate())
        rows += [
            {
                "section": "simulator",
                "name": name,
                "task": task_name,
                "num_envs_per_env_runner": num_envs if "single-agent env" not in name else 1,
                "env_steps": steps,
                "seconds": round(steps / rate, 3),
                "env_steps_per_s": round(rate, 1),
                "timing": "random actions (+ policies: theirs), one core, best of 2 interleaved",
            }
            for name, rate in best.items()
        ]
    return rows


def _simulator_layers(
    task: dict[str, str], steps: int, num_envs: int, seed: int
) -> dict[str, Callable[[], float]]:
    """For one task, a function measuring each layer's env steps per second."""
    import gymnasium as gym
    import torch

    from rllib_hatrpo.envs.batched_mamujoco import make_batched_mamujoco
    from rllib_hatrpo.envs.mamujoco import make_mamujoco_env
    from rllib_hatrpo.sampling.team_env_runner import one_torch_thread
    from rllib_hatrpo.sampling.vector_env import TeamVectorEnv

    config = {**task, "obs_mode": "global"}
    probe = make_batched_mamujoco(config, 1)  # its action spaces only
    actions = random_actions(probe.action_spaces, steps // num_envs, num_envs, seed)
    probe.close()

    def single_agent() -> float:
        env = gym.make(f"{task['scenario']}-v5")
        controls = random_actions({"a": env.action_space}, steps, 1, seed)
        env.reset(seed=seed)
        start = time.perf_counter()
        for control in controls:
            _, _, terminated, truncated, _ = env.step(control["a"][0])
            if terminated or truncated:
                env.reset()
        elapsed = time.perf_counter() - start
        env.close()
        return steps / elapsed

    def batched() -> float:
        env = make_batched_mamujoco(config, num_envs)
        return len(actions) * num_envs / vector_env_seconds(env, actions)

    def one_by_one() -> float:
        env = TeamVectorEnv(lambda: make_mamujoco_env({**config, "batched": False}), num_envs)
        return len(actions) * num_envs / vector_env_seconds(env, actions)

    def with_policies(bare_physics: bool) -> Callable[[], float]:
        """The bare physics (else our batched copies) plus HATRPO's policies acting at every
        step as its EnvRunner acts (`TeamEnvRunner.act`, HARL's networks, sampled actions): the
        bound of sampling with that layer, before the EnvRunner's rollout arrays and metrics."""

        def rate() -> float:
            runner = _local_env_runner(task, num_envs)
            obs, _ = runner.env.reset(seed=seed)
            try:
                with one_torch_thread(), torch.inference_mode():
                    if bare_physics:  # the observations stay those of the reset
                        return raw_simulator_rate(
                            steps, num_envs, task["scenario"], lambda: runner.act(obs, True)
                        )
                    start = time.perf_counter()
                    for _ in range(len(actions)):
                        obs = runner.env.step(runner.env_actions(runner.act(obs, True))).obs
                    return len(actions) * num_envs / (time.perf_counter() - start)
            finally:
                runner.stop()

        return rate

    layers = {
        RAW_SIMULATOR: lambda: raw_simulator_rate(steps, num_envs, task["scenario"]),
        f"{RAW_SIMULATOR} + policies": with_policies(bare_physics=True),
        "gymnasium single-agent env": single_agent,
        "rllib_hatrpo batched copies": batched,
        "rllib_hatrpo batched copies + policies": with_policies(bare_physics=False),
        "mamujoco_v1 copies one by one": one_by_one,
    }
    envpool_rate = _envpool_rate(task["scenario"], steps, num_envs, seed)
    if envpool_rate is not None:
        layers["envpool (single-agent, 1 thread)"] = envpool_rate
    return layers


def _local_env_runner(task: dict[str, str], num_envs: int) -> Any:
    """HATRPO's EnvRunner (HARL's HalfCheetah settings, `obs_mode: global`) on `task` with
    `num_envs` copies, built in this process without Ray."""
    from benchmarks.baselines import REFERENCE, algorithm_config
    from rllib_hatrpo.sampling.team_env_runner import TeamEnvRunner

    overrides = {f"env_config.{key}": value for key, value in task.items()}
    overrides |= {
        "env_runners.num_env_runners": 0,
        "env_runners.num_envs_per_env_runner": num_envs,
        "evaluation": {},
    }
    config = algorithm_config(REFERENCE, overrides)
    config.validate()  # completes the multi-agent setup, as building the algorithm does
    return TeamEnvRunner(config=config, worker_index=0)


def _envpool_rate(scenario: str, steps: int, num_envs: int, seed: int) -> Callable | None:
    """A function measuring EnvPool's `<scenario>-v5` batch (one thread), or None without
    EnvPool (not a dependency: `pip install envpool` to compare)."""
    try:
        import envpool
    except ImportError:
        return None
    import numpy as np

    def rate() -> float:
        env = envpool.make_gymnasium(f"{scenario}-v5", num_envs=num_envs, num_threads=1, seed=seed)
        shape = (steps // num_envs, num_envs, *env.action_space.shape)
        space = env.action_space
        controls = np.random.default_rng(seed).uniform(space.low, space.high, shape)
        env.reset()
        start = time.perf_counter()
        for control in controls:
            env.step(control)
        elapsed = time.perf_counter() - start
        env.close()
        return shape[0] * num_envs / elapsed

    return rate


def env_runner_raw_rate(algo: Any, steps: int) -> float:
    """:func:`raw_simulator_rate` for each EnvRunner's own copies, measured in every EnvRunner's
    process at once (in the driver when it samples itself), averaged: the ceiling of each
    sampling core at this moment."""
    config = algo.config
    scenario = (config.env_config or {}).get("scenario", "HalfCheetah")

    def measure(runner: Any) -> float:
        return raw_simulator_rate(steps, runner.num_envs, scenario)

    group = algo.env_runner_group
    if group.num_remote_env_runners() == 0:
        return measure(algo.env_runner)
    rates = group.foreach_env_runner(measure, local_env_runner=False)
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
