"""Deterministic evaluation of a checkpoint's policies in a local env, optionally filmed.

During training, evaluation runs on RLlib's own evaluation EnvRunners:
`config.evaluation(evaluation_interval=N, evaluation_num_env_runners=1, evaluation_duration=10,
evaluation_duration_unit="episodes")` reports every N iterations under `result["evaluation"]`,
acting with each policy's mean action (`HAConfig` defaults `evaluation_config` to
`{"explore": False}`). :func:`evaluate_checkpoint` does the same for a saved checkpoint without
building the algorithm (no Ray, no learner): it loads only the actor modules.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from rllib_hatrpo.operations.checkpointing import (
    find_checkpoint,
    load_config,
    load_modules,
    written_by,
)
from rllib_hatrpo.sampling.env_probe import build_env
from rllib_hatrpo.sampling.team_env_runner import env_action

GL_BACKENDS: tuple[str, ...] = ("egl", "osmesa")
"""MuJoCo's offscreen OpenGL backends, in the order they are tried (GPU first)."""

_GL_PROBE = (
    "import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco/>'); "
    "r = mujoco.Renderer(m, 16, 16); r.render(); r.close()"
)

Frame = np.ndarray
"""An RGB frame, (height, width, 3) uint8."""


def evaluate_checkpoint(
    checkpoint: str, episodes: int = 10, video_path: str | None = None, *, seed: int = 0
) -> dict[str, Any]:
    """Runs `episodes` episodes with each policy's mean action in a local env built as in the
    checkpoint's config (same env and env_config).

    Args:
        checkpoint: An algorithm checkpoint folder, or a run directory holding one, absolute or
            relative (after a crash mid-save, its `.old` twin is used, as by
            `checkpointing.restore_path`).
        episodes: Number of episodes, >= 1.
        video_path: If given, every episode is rendered offscreen (the env built with
            `render_mode="rgb_array"`) into this MP4 file: one frame after each reset and after
            each step, at the env's `render_fps`. MuJoCo's OpenGL backend is chosen by
            :func:`select_mujoco_gl`.
        seed: Seed of the first reset; later episodes continue the env's random stream.

    Returns:
        `{"episodes", "team_return_mean", "team_return_std", "episode_len_mean"}`; an episode's
        team return is the mean over agents of their summed rewards (in MaMuJoCo every agent
        gets the team reward).

    Custom env-to-module connectors (e.g. observation filters) of the config are not applied.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} is invalid: must be an integer >= 1.")
    path = find_checkpoint(checkpoint)
    written_by(path)  # ours, or a CheckpointError saying so
    config = load_config(path)
    policy = MeanActionPolicy(load_modules(path, list(config.policies)), config)
    env_config = dict(config.env_config or {})
    if video_path is not None:
        select_mujoco_gl()
        env_config["render_mode"] = "rgb_array"
    with contextlib.ExitStack() as cleanup:
        env = build_env(config.env, env_config)
        cleanup.callback(env.close)
        on_frame = None
        if video_path is not None:
            writer = _video_writer(video_path, _render_fps(env))
            cleanup.callback(writer.close)
            on_frame = writer.append_data
        results = [
            run_episode(env, policy, seed if i == 0 else None, on_frame) for i in range(episodes)
        ]
    returns = [team_return for team_return, _ in results]
    return {
        "episodes": episodes,
        "team_return_mean": float(np.mean(returns)),
        "team_return_std": float(np.std(returns)),
        "episode_len_mean": float(np.mean([length for _, length in results])),
    }


class MeanActionPolicy:
    """Every agent's deterministic action: the mean of its module's action distribution (the
    argmax for Discrete actions), mapped into the env's action space as the EnvRunners do
    (`team_env_runner.env_action`)."""

    def __init__(self, modules: dict[str, RLModule], config: AlgorithmConfig):
        self.modules = modules
        self.config = config

    @torch.no_grad()
    def __call__(self, observations: dict[str, np.ndarray]) -> dict[str, Any]:
        return {agent: self.act(agent, obs) for agent, obs in observations.items()}

    def act(self, agent: str, obs: np.ndarray) -> Any:
        module = self.modules[self.config.policy_mapping_fn(agent, None)]
        batch = {Columns.OBS: torch.as_tensor(np.asarray(obs)[None])}
        inputs = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        dist = module.get_inference_action_dist_cls().from_logits(inputs).to_deterministic()
        return env_action(self.config, dist.sample()[0].numpy(), module.action_space)


def run_episode(
    env: Any,
    policy: Callable[[dict[str, Any]], dict[str, Any]],
    seed: int | None,
    on_frame: Callable[[Frame], Any] | None = None,
) -> tuple[float, int]:
    """Plays one episode of a multi-agent env; returns (team return, env steps).

    With `on_frame`, `env.render()` is passed to it after the reset and after every step.
    """
    obs, _ = env.reset(seed=seed)
    if on_frame is not None:
        on_frame(env.render())
    returns: dict[str, float] = {}
    steps = 0
    done = False
    while not done:
        obs, rewards, terminateds, truncateds, _ = env.step(policy(obs))
        steps += 1
        for agent, reward in rewards.items():
            returns[agent] = returns.get(agent, 0.0) + float(reward)
        done = terminateds["__all__"] or truncateds["__all__"]
        if on_frame is not None:
            on_frame(env.render())
    return (float(np.mean(list(returns.values()))) if returns else math.nan), steps


def select_mujoco_gl() -> str:
    """Chooses MuJoCo's offscreen OpenGL backend and returns it.

    A user-set `MUJOCO_GL` is kept. Otherwise EGL (GPU, or Mesa's software EGL) and then OSMesa
    (software; Debian package `libosmesa6`) are each tried in a subprocess, because a backend
    that fails to load can leave PyOpenGL unusable for the other in this process. The first
    that renders is written to `MUJOCO_GL`, which must happen before MuJoCo's first render.

    Raises:
        RuntimeError: If neither backend can render here.
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for backend in GL_BACKENDS:
        if gl_backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            return backend
    raise RuntimeError(
        f"No offscreen OpenGL for MuJoCo: none of {list(GL_BACKENDS)} can render here. Install "
        "OSMesa (Debian/Ubuntu: `apt-get install -y libosmesa6`) or a GPU driver with EGL, or "
        "set MUJOCO_GL yourself."
    )


def gl_backend_works(backend: str) -> bool:
    """True if MuJoCo renders with `MUJOCO_GL=backend` (tried in a fresh Python process)."""
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _GL_PROBE],
            env={**env, "MUJOCO_GL": backend},
            capture_output=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def _render_fps(env: Any, default: float = 30.0) -> float:
    """The env's `metadata["render_fps"]`, looked up through its wrappers (MaMuJoCo keeps it on
    its inner single-agent env)."""
    while env is not None:
        fps = (getattr(env, "metadata", None) or {}).get("render_fps")
        if fps:
            return float(fps)
        env = next(
            (getattr(env, a) for a in ("par_env", "single_agent_env", "env") if hasattr(env, a)),
            None,
        )
    return default


def _video_writer(video_path: str | os.PathLike, fps: float) -> Any:
    """An imageio MP4 writer (H.264 through the ffmpeg binary that `imageio-ffmpeg` ships) that
    keeps the frames' size (an odd width or height is scaled up by one pixel)."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the MP4 backend; fail here, not at the first frame)
    except ImportError as err:
        raise ImportError(
            f"Writing a video needs imageio and imageio-ffmpeg ({err}); "
            "`pip install imageio imageio-ffmpeg`."
        ) from err
    Path(video_path).parent.mkdir(parents=True, exist_ok=True)
    # H.264 in yuv420p needs even sizes; imageio's default (16) would rescale e.g. 600x400
    return imageio.get_writer(os.fspath(video_path), fps=fps, macro_block_size=2)
