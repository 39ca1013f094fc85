"""Evaluation: RLlib's evaluation EnvRunners act with the actors' mean actions, reproducibly;
`evaluate_checkpoint` reproduces them from a checkpoint and films them, and its returns equal a
rollout written out here and, on a toy env, a closed form."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo.utils.env import ParallelEnv
from ray.rllib.core.columns import Columns
from ray.tune.registry import register_env
from toy_envs import team_step_result

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.app.evaluation import evaluate_checkpoint, select_mujoco_gl
from rllib_hatrpo.envs import ParallelStateEnv, make_mamujoco_env
from rllib_hatrpo.operations.checkpointing import save_checkpoint

HOPPER = {"scenario": "Hopper", "agent_conf": "3x1"}
PENDULUM = {"scenario": "InvertedDoublePendulum", "agent_conf": None, "agent_obsk": None}
SEED = 2
# RLlib seeds EnvRunner i of the evaluation group with seed + i + 1e6; ours is runner 1.
EVAL_RUNNER_SEED = SEED + 1 + 1_000_000


def small_config(env_config: dict) -> HATRPOConfig:
    return (
        HATRPOConfig()
        .environment("mamujoco", env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=200, hidden_sizes=[8], kl_threshold=0.5)
        .debugging(seed=SEED)
    )


@pytest.fixture(scope="module")
def hopper(ray_session, tmp_path_factory):
    """Three agents trained two iterations with one remote evaluation EnvRunner evaluating
    every second iteration (explore=False is HAConfig's default), and a checkpoint."""
    config = small_config(HOPPER).evaluation(
        evaluation_interval=2,
        evaluation_num_env_runners=1,
        evaluation_duration=2,
        evaluation_duration_unit="episodes",
    )
    algo = config.build_algo()
    results = [algo.train() for _ in range(2)]
    path = save_checkpoint(algo, tmp_path_factory.mktemp("hopper") / "checkpoint")
    yield algo, results, path
    algo.stop()


def rollout_by_hand(modules, env, episodes: int, seed: int) -> tuple[list[float], list[int]]:
    """Each episode's team return and length with every agent's mean action: the first half
    of its module's outputs, mapped from [-1, 1] onto the action bounds (RLlib's
    normalize_actions, the default) and clipped to them."""
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed if i == 0 else None)
        total, steps, done = 0.0, 0, False
        while not done:
            actions = {}
            for agent, agent_obs in obs.items():
                space = env.action_spaces[agent]
                with torch.no_grad():
                    out = modules[agent].forward_inference(
                        {Columns.OBS: torch.as_tensor(np.array(agent_obs)[None])}
                    )
                mean = out[Columns.ACTION_DIST_INPUTS][0, : space.shape[0]].double().numpy()
                unsquashed = space.low + (mean + 1.0) * (space.high - space.low) / 2.0
                actions[agent] = np.clip(unsquashed, space.low, space.high).astype(space.dtype)
            obs, rewards, terminateds, truncateds, _ = env.step(actions)
            total += float(np.mean(list(rewards.values())))  # every agent acts at every step
            steps += 1
            done = terminateds["__all__"] or truncateds["__all__"]
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


def episode_stats(evaluation: dict) -> tuple[float, ...]:
    runners = evaluation["env_runners"]
    keys = ("episode_return_mean", "episode_return_min", "episode_return_max", "episode_len_mean")
    return tuple(float(runners[key]) for key in keys)


@pytest.mark.slow
def test_evaluation_reports_every_n_iterations(hopper):
    algo, results, _ = hopper
    assert algo.evaluation_config.explore is False
    assert "evaluation" not in results[0]
    evaluation = results[1]["evaluation"]["env_runners"]
    assert evaluation["num_episodes"] == 2
    team_returns = evaluation["agent_episode_returns_mean"]
    assert sorted(team_returns) == ["agent_0", "agent_1", "agent_2"]
    assert len(set(team_returns.values())) == 1  # every agent gets the team reward


@pytest.mark.slow
def test_evaluations_of_the_same_weights_are_identical(hopper):
    algo, results, _ = hopper
    first, second = algo.evaluate(), algo.evaluate()
    # the evaluation EnvRunner reseeds its env for every evaluation
    assert episode_stats(first) == episode_stats(second) == episode_stats(results[1]["evaluation"])
    assert episode_stats(first)[1] != episode_stats(first)[2]  # two different episodes


@pytest.mark.slow
def test_evaluation_runner_acts_with_the_learners_mean_action(hopper):
    algo, _, _ = hopper
    [[episode]] = algo.eval_env_runner_group.foreach_env_runner(
        lambda runner: runner.sample(num_episodes=1), local_env_runner=False
    )
    learner_modules = algo.learner_group._learner.module
    for agent, obs in episode.obs.items():
        actions = episode.actions[agent]
        with torch.no_grad():
            batch = {Columns.OBS: torch.as_tensor(np.array(obs))}  # a writable copy
            inputs = learner_modules[agent].forward_inference(batch)
        mean = inputs[Columns.ACTION_DIST_INPUTS][:, : actions.shape[1]].numpy()
        # float32 rounding only (batched here, one row at a time there); exploration noise
        # would be of the order of the policy's std, about 0.4
        np.testing.assert_allclose(actions, mean, rtol=0, atol=1e-5, err_msg=agent)


@pytest.mark.slow
def test_evaluate_checkpoint_reproduces_rllibs_evaluation(hopper):
    _, results, path = hopper
    local = evaluate_checkpoint(str(path), episodes=2, seed=EVAL_RUNNER_SEED)
    assert local == evaluate_checkpoint(str(path), episodes=2, seed=EVAL_RUNNER_SEED)
    rllib = results[1]["evaluation"]["env_runners"]
    assert set(local) == {"episodes", "team_return_mean", "team_return_std", "episode_len_mean"}
    assert local["episodes"] == 2
    # same seed, same mean actions: the same two episodes as the evaluation EnvRunner's
    team_return = float(np.mean(list(rllib["agent_episode_returns_mean"].values())))
    assert local["team_return_mean"] == pytest.approx(team_return, rel=1e-9)
    assert local["episode_len_mean"] == float(rllib["episode_len_mean"])


@pytest.mark.slow
def test_evaluate_checkpoint_return_equals_a_rollout_by_hand(hopper):
    algo, _, path = hopper
    modules = algo.learner_group._learner.module
    env = make_mamujoco_env(HOPPER)
    try:
        returns, lengths = rollout_by_hand(modules, env, episodes=3, seed=5)
    finally:
        env.close()
    result = evaluate_checkpoint(str(path), episodes=3, seed=5)
    assert result["episodes"] == 3
    assert result["team_return_mean"] == pytest.approx(np.mean(returns), rel=1e-6)
    assert result["team_return_std"] == pytest.approx(np.std(returns), rel=1e-5, abs=1e-6)
    assert result["episode_len_mean"] == np.mean(lengths)
    assert len(set(lengths)) > 1 or len(set(returns)) > 1  # three different episodes


class RampEnv(ParallelEnv):
    """Two agents with constant observations; at step t (1-based) the team earns t·u0 + u1,
    where u0 ∈ [−2, 2] and u1 ∈ [0, 1] are the actions the env receives. An episode lasts L
    steps, L drawn from [2, 6] by the env's generator at each reset, and ends by truncation.
    With constant actions an episode's return is u0·L(L+1)/2 + u1·L."""

    metadata = {"name": "ramp"}
    possible_agents = ["a0", "a1"]
    BOUNDS = {"a0": (-2.0, 2.0), "a1": (0.0, 1.0)}

    def __init__(self):
        self.agents = []
        self._rng = np.random.default_rng(0)
        self._t, self._len = 0, 2

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1.0, (2,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Box(*self.BOUNDS[agent], (1,), np.float32)

    def state(self):
        return np.array([self._t, self._len], np.float32)

    def _obs(self):
        return {a: np.ones(2, np.float32) for a in self.possible_agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t, self._len = 0, int(self._rng.integers(2, 7))
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self._t += 1
        reward = self._t * float(actions["a0"][0]) + float(actions["a1"][0])
        rewards = {a: reward for a in self.agents}
        return team_step_result(self, self._obs(), rewards, truncated=self._t >= self._len)


register_env("eval_ramp", lambda config: ParallelStateEnv(RampEnv()))


def test_evaluate_checkpoint_return_has_the_closed_form_of_a_toy_env(ray_session, tmp_path):
    algo = (
        HATRPOConfig()
        .environment("eval_ramp")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(hidden_sizes=[8])
        .debugging(seed=SEED)
        .build_algo()
    )
    # mean actions set by hand: the head's output is its bias whatever the observation
    means = {"a0": 0.5, "a1": -0.5}
    try:
        for agent, mean in means.items():
            head = algo.learner_group._learner.module[agent].head
            with torch.no_grad():
                head.weight.zero_()
                head.bias.fill_(mean)
        path = save_checkpoint(algo, tmp_path / "checkpoint")
    finally:
        algo.stop()
    episodes, seed = 4, 11
    result = evaluate_checkpoint(str(path), episodes=episodes, seed=seed)

    # [-1, 1] onto the bounds: u0 = −2 + 1.5 · 4 / 2 = 1, u1 = 0 + 0.5 · 1 / 2 = 0.25
    u0, u1 = 1.0, 0.25
    rng = np.random.default_rng(seed)  # the env's episode lengths: reseeded once, then drawn on
    lengths = [int(rng.integers(2, 7)) for _ in range(episodes)]
    returns = [u0 * n * (n + 1) / 2 + u1 * n for n in lengths]
    assert len(set(lengths)) > 1  # episodes of different lengths
    assert result["episodes"] == episodes
    assert result["episode_len_mean"] == pytest.approx(np.mean(lengths), rel=1e-12)
    assert result["team_return_mean"] == pytest.approx(np.mean(returns), rel=1e-6)
    assert result["team_return_std"] == pytest.approx(np.std(returns), rel=1e-5)


@pytest.mark.slow
def test_evaluate_checkpoint_rejects_no_episodes(hopper):
    _, _, path = hopper
    with pytest.raises(ValueError, match="episodes=0"):
        evaluate_checkpoint(str(path), episodes=0)


def test_video_has_a_frame_per_reset_and_step(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", ""))  # restored afterwards
    try:
        select_mujoco_gl()
    except RuntimeError as err:
        pytest.skip(f"no offscreen OpenGL can be set up here: {err}")
    import imageio.v2 as imageio

    algo = small_config(PENDULUM).build_algo()  # episodes of about ten steps
    try:
        path = save_checkpoint(algo, tmp_path / "checkpoint")
        env = make_mamujoco_env(PENDULUM)
        returns, lengths = rollout_by_hand(algo.learner_group._learner.module, env, 2, seed=0)
        env.close()
    finally:
        algo.stop()
    video = tmp_path / "videos" / "pendulum.mp4"
    result = evaluate_checkpoint(str(path), episodes=2, video_path=str(video))

    env = make_mamujoco_env({**PENDULUM, "render_mode": "rgb_array"})
    env.reset(seed=0)
    frame_shape = env.render().shape
    env.close()
    reader = imageio.get_reader(video)
    frames = list(reader.iter_data())
    assert reader.get_meta_data()["fps"] == 20.0  # the env's render_fps (dt = 0.05 s)
    reader.close()
    assert len(frames) == result["episodes"] * (result["episode_len_mean"] + 1)
    # filming changes nothing: the episodes of a rollout by hand without rendering
    assert result["episode_len_mean"] == np.mean(lengths)
    assert result["team_return_mean"] == pytest.approx(np.mean(returns), rel=1e-6)
    assert frames[0].shape == frame_shape == (480, 480, 3)
    assert np.std(frames[0]) > 0  # a rendered scene, not a blank frame
