"""TeamEnvRunner: fragments equal a step-by-step rollout of the same envs, episode ends and
bootstrap rows, action masks, mean actions, seeding, RLlib's metrics, weights, config checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ray.rllib.core import COMPONENT_RL_MODULE
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
from ray.tune.registry import register_env
from toy_envs import make_episode_ends, make_masked_choice

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.envs import GLOBAL_STATE_KEY
from rllib_hatrpo.sampling.env_probe import build_env
from rllib_hatrpo.sampling.team_batch import TEAM_BATCH, TeamBatchBuilder
from rllib_hatrpo.sampling.team_env_runner import TeamEnvRunner, env_action
from rllib_hatrpo.sampling.team_fragment import TeamFragment

register_env("episode_ends", make_episode_ends)
register_env("masked_choice", make_masked_choice)
HALFCHEETAH_2X3 = {"scenario": "HalfCheetah", "agent_conf": "2x3", "obs_mode": "global"}


def config_for(env: str, env_config: dict | None = None, num_envs: int = 3, seed: int = 4):
    config = (
        HATRPOConfig()
        .environment(env, env_config=env_config or {})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
        .training(hidden_sizes=[8])
        .debugging(seed=seed)
    )
    config.validate()
    return config


def runner_for(env: str, env_config: dict | None = None, *, worker_index: int = 0, **kwargs):
    return TeamEnvRunner(config=config_for(env, env_config, **kwargs), worker_index=worker_index)


def replay(runner: TeamEnvRunner, fragments: list[TeamFragment]) -> None:
    """Steps fresh copies of the runner's envs, reset as it resets them (copy i with seed + i),
    with the fragments' actions, and checks every row of every fragment against them.

    Fragments carry no copy index: each copy's chain of fragments is found by its first
    observation and state, and every fragment must belong to exactly one chain.
    """
    config, pool = runner.config, list(fragments)
    for i in range(runner.num_envs):
        env = build_env(config.env, config.env_config)
        obs, infos = env.reset(seed=runner._seed + i)
        agents = list(env.possible_agents)
        while True:
            state = infos[agents[0]][GLOBAL_STATE_KEY]
            chain = [
                f
                for f in pool
                if np.array_equal(f.states[0], state)
                and all(np.array_equal(_row(f.obs[a], 0), _as_obs(obs[a])) for a in agents)
            ]
            if not chain:
                break
            (fragment,) = chain
            pool.remove(fragment)
            for t in range(len(fragment)):
                for a in agents:
                    np.testing.assert_array_equal(_row(fragment.obs[a], t), _as_obs(obs[a]))
                np.testing.assert_array_equal(
                    fragment.states[t], infos[agents[0]][GLOBAL_STATE_KEY]
                )
                actions = {
                    a: env_action(config, fragment.actions[a][t], env.get_action_space(a))
                    for a in agents
                }
                obs, rewards, terminateds, truncateds, infos = env.step(actions)
                assert fragment.rewards[t] == np.mean([rewards[a] for a in agents])
                done = terminateds["__all__"] or truncateds["__all__"]
                if done:  # only a fragment's last row ends an episode
                    assert t == len(fragment) - 1
                    assert fragment.terminated == terminateds["__all__"]
            # the bootstrap row: the state after the last step (before any reset)
            np.testing.assert_array_equal(fragment.states[-1], infos[agents[0]][GLOBAL_STATE_KEY])
            if done:
                obs, infos = env.reset()
        env.close()
    assert not pool, f"{len(pool)} fragments belong to no env copy's rollout"


def _row(obs: Any, t: int) -> Any:
    return {k: v[t] for k, v in obs.items()} if isinstance(obs, dict) else obs[t]


def _as_obs(obs: Any) -> Any:
    return {k: np.asarray(v) for k, v in obs.items()} if isinstance(obs, dict) else obs


def _assert_same_obs(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(a, b)


def test_fragments_equal_a_step_by_step_rollout_of_the_same_envs():
    runner = runner_for("episode_ends", num_envs=3)
    # 7 steps per copy per call: episodes (2-6 steps) end inside calls and run across them
    fragments = [f for _ in range(3) for f in runner.sample(num_timesteps=20)]
    replay(runner, fragments)
    assert sum(len(f) for f in fragments) == 3 * 7 * 3
    assert {f.terminated for f in fragments} == {True, False}
    for f in fragments:
        assert f.actions["a0"].dtype == np.float32 and f.actions["a0"].shape == (len(f), 1)
        assert f.actions["a1"].dtype == np.int64 and f.actions["a1"].shape == (len(f),)
        assert f.states.shape == (len(f) + 1, 5) and f.states.dtype == np.float32
        # the env received a0's action unsquashed from [-1, 1] to [-2, 2] (normalize_actions)
        expected = np.clip(2.0 * f.actions["a0"][:, 0], -2.0, 2.0)
        np.testing.assert_allclose(f.states[1:, 3], expected, atol=1e-6)
        assert f.env_steps() == len(f) and f.agent_steps() == 2 * len(f)
    runner.stop()


def test_halfcheetah_fragments_equal_a_step_by_step_rollout():
    runner = runner_for("mamujoco", HALFCHEETAH_2X3, num_envs=2)
    # 600 steps per copy per call: the 1000-step episodes are truncated in the second call
    fragments = [f for _ in range(2) for f in runner.sample(num_timesteps=1200)]
    replay(runner, fragments)
    # each copy's episode runs 600 steps in the first call, is truncated after 400 in the
    # second (ended fragments first), and its next episode goes on for 200
    assert [len(f) for f in fragments] == [600, 600, 400, 400, 200, 200]
    assert not any(f.terminated for f in fragments)
    runner.stop()


def test_episode_ends_start_new_fragments_and_cut_ones_bootstrap_from_the_next_state():
    runner = runner_for("episode_ends", num_envs=2)
    first, second = runner.sample(num_timesteps=16), runner.sample(num_timesteps=16)
    for f in first + second:
        t, length = f.states[:, 0], f.states[0, 1]
        np.testing.assert_array_equal(np.diff(t), 1)  # consecutive steps of one episode
        if t[-1] == length:  # ended: L even -> terminated, odd -> truncated
            assert f.terminated == (length % 2 == 0)
        else:  # cut by the batch end
            assert not f.terminated
    ended = [f for f in first if f.states[-1, 0] == f.states[0, 1]]
    cut = [f for f in first if f not in ended]
    assert first == ended + cut and len(cut) == 2  # ended ones first, then one cut per copy
    for f in cut:  # the next call goes on from the cut fragment's bootstrap state
        (continued,) = [g for g in second if np.array_equal(g.states[0], f.states[-1])]
        assert continued.states[0, 0] == f.states[-1, 0] > 0
    runner.stop()


def test_num_episodes_returns_whole_episodes_from_the_same_seeded_resets():
    runner = runner_for("episode_ends", num_envs=3)
    episodes = runner.sample(num_episodes=4, explore=False)
    assert len(episodes) == 4
    for f in episodes:
        assert f.states[0, 0] == 0 and f.states[-1, 0] == f.states[0, 1] == len(f)
    again = runner.sample(num_episodes=4, explore=False)
    for a, b in zip(episodes, again, strict=True):
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.actions["a0"], b.actions["a0"])
    runner.stop()


@pytest.mark.parametrize("num_env_runners", [0, 2])
def test_a_sample_call_per_runner_adds_up_to_the_train_batch(num_env_runners):
    config = (
        config_for("episode_ends", num_envs=3)
        .env_runners(num_env_runners=num_env_runners)
        .training(train_batch_size_per_learner=60)
    )
    runners = [
        TeamEnvRunner(config=config, worker_index=w)
        for w in range(min(1, num_env_runners), num_env_runners + 1)
    ]
    sampled = [sum(map(len, r.sample())) for r in runners]
    assert sampled == [60 // len(runners)] * len(runners)  # not 200 steps per env copy
    for r in runners:
        r.stop()


def test_episodes_longer_than_the_preallocated_rows_are_whole():
    runner = runner_for("episode_ends", {"min_len": 300, "max_len": 700}, num_envs=3)
    episodes = runner.sample(num_episodes=2)  # past 256 steps: the preallocated rows double
    replay(runner, episodes)
    assert [f.states[0, 0] for f in episodes] == [0, 0] and min(map(len, episodes)) >= 300
    runner.stop()


def test_explore_false_takes_each_policy_mean_action():
    runner = runner_for("episode_ends", num_envs=3)
    for f in runner.sample(num_timesteps=30, explore=False):
        for agent, module in runner.module.items():
            with torch.no_grad():
                out = module.forward_inference({Columns.OBS: torch.as_tensor(f.obs[agent])})
            inputs = out[Columns.ACTION_DIST_INPUTS].numpy()
            if agent == "a0":  # Gaussian: the mean (first half of the inputs)
                np.testing.assert_allclose(f.actions[agent], inputs[:, :1], atol=1e-6)
            else:  # Categorical: the most likely action
                np.testing.assert_array_equal(f.actions[agent], inputs.argmax(axis=1))
    explored = runner.sample(num_timesteps=30, explore=True)
    assert len({float(a) for f in explored for a in f.actions["a0"][:, 0]}) > 5
    runner.stop()


def test_masked_actions_are_never_sampled():
    runner = runner_for("masked_choice", num_envs=4)
    for explore in (True, False):
        for f in runner.sample(num_timesteps=400, explore=explore):
            for agent, obs in f.obs.items():
                assert set(obs) == {"observation", "action_mask"}
                taken = obs["action_mask"][np.arange(len(f)), f.actions[agent]]
                assert np.all(taken == 1), (agent, explore)
    runner.stop()


def test_a_seeded_runner_samples_the_same_fragments_again():
    def sample() -> list[TeamFragment]:
        runner = runner_for("episode_ends", worker_index=2, seed=4)
        assert runner._seed == 6  # RLlib's rule: seed + worker index (replay checks the envs)
        fragments = runner.sample(num_timesteps=30)
        runner.stop()
        return fragments

    first, again = sample(), sample()
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.states, b.states)
        for agent in ("a0", "a1"):
            np.testing.assert_array_equal(a.actions[agent], b.actions[agent])


def compiled(metrics: dict) -> dict:
    logger = MetricsLogger(root=True)
    logger.aggregate([metrics])
    return logger.compile()


COMPARED_METRICS = (
    "episode_return_mean",
    "episode_return_min",
    "episode_return_max",
    "episode_len_mean",
    "episode_len_min",
    "episode_len_max",
    "agent_episode_returns_mean",
    "module_episode_returns_mean",
    "agent_steps",
    "num_episodes",
    "num_episodes_lifetime",
    "num_env_steps_sampled",
    "num_env_steps_sampled_lifetime",
    "num_agent_steps_sampled",
    "num_agent_steps_sampled_lifetime",
    "num_module_steps_sampled",
    "num_module_steps_sampled_lifetime",
)


CONNECTOR_METRICS = {
    "timers",  # the connector pieces' timers
    "connector_pipeline_timer",
    "env_to_module_connector",
    "module_to_env_connector",
    "env_to_module_sum_episodes_length_in",
    "env_to_module_sum_episodes_length_out",
}


def test_metrics_have_rllibs_keys_and_the_hand_computed_returns():
    config = config_for("episode_ends", num_envs=1)
    ours, rllibs = (
        TeamEnvRunner(config=config, worker_index=0),
        MultiAgentEnvRunner(config=config, worker_index=0),
    )
    episodes = ours.sample(num_episodes=5)
    rllibs.sample(num_episodes=5)
    metrics, reference = compiled(ours.get_metrics()), compiled(rllibs.get_metrics())
    ours.stop()
    rllibs.stop()

    # returns by hand: a0 earns t, a1 2t at step t of an episode of length L
    lengths = np.array([len(f) for f in episodes])
    a0, a1 = lengths * (lengths + 1) / 2, lengths * (lengths + 1)
    assert metrics["agent_episode_returns_mean"] == pytest.approx(
        {"a0": a0.mean(), "a1": a1.mean()}
    )
    assert metrics["module_episode_returns_mean"] == metrics["agent_episode_returns_mean"]
    assert metrics["episode_return_mean"] == pytest.approx((a0 + a1).mean())
    assert metrics["episode_return_min"] == pytest.approx((a0 + a1).min())
    assert metrics["episode_return_max"] == pytest.approx((a0 + a1).max())
    assert metrics["episode_len_mean"] == pytest.approx(lengths.mean())
    assert metrics["num_episodes"] == 5 and metrics["num_env_steps_sampled"] == lengths.sum()
    assert metrics["num_agent_steps_sampled"] == {"a0": lengths.sum(), "a1": lengths.sum()}
    # RLlib's runner on the same seeded env: the same episodes, keys and values
    for key in COMPARED_METRICS:
        assert metrics[key] == pytest.approx(reference[key]), key
    timers = {"sample", "env_step_timer", "env_reset_timer", "rlmodule_inference_timer"}
    assert timers <= set(metrics) and timers <= set(reference)
    # everything but the timers and counts of RLlib's connector pipelines (we have none)
    assert set(metrics) == set(reference) - CONNECTOR_METRICS


def test_the_critic_is_not_built_and_older_weights_are_ignored():
    runner = runner_for("episode_ends")
    assert sorted(runner.module.keys()) == ["a0", "a1"]  # no shared critic
    state = runner.get_state()
    new = {m: {k: v + 1.0 for k, v in s.items()} for m, s in state[COMPONENT_RL_MODULE].items()}
    runner.set_state({COMPONENT_RL_MODULE: new, WEIGHTS_SEQ_NO: 3})
    old = {m: {k: v - 1.0 for k, v in s.items()} for m, s in new.items()}
    runner.set_state({COMPONENT_RL_MODULE: old, WEIGHTS_SEQ_NO: 2})  # older than ours: ignored
    after = runner.get_state()[COMPONENT_RL_MODULE]
    for module, weights in new.items():
        for name, value in weights.items():
            np.testing.assert_array_equal(after[module][name], value)
    runner.stop()


def test_team_batch_concatenates_the_non_empty_fragments():
    runner = runner_for("episode_ends", num_envs=3)
    fragments = runner.sample(num_timesteps=30)
    empty = TeamFragment(
        obs={a: f.obs[a][:0] for a, f in zip(("a0", "a1"), fragments[:2], strict=True)},
        actions={"a0": fragments[0].actions["a0"][:0], "a1": fragments[0].actions["a1"][:0]},
        states=fragments[0].states[:1],
        rewards=fragments[0].rewards[:0],
        terminated=False,
    )
    team = TeamBatchBuilder()(rl_module=None, batch={}, episodes=[empty, *fragments])[TEAM_BATCH]
    assert team.fragment_lengths == [len(f) for f in fragments]
    assert team.terminated == [f.terminated for f in fragments]
    assert len(team.states) == 30 + len(fragments) and len(team.rewards) == 30
    np.testing.assert_array_equal(team.states, np.concatenate([f.states for f in fragments]))
    for agent in ("a0", "a1"):
        _assert_same_obs(team.obs[agent], np.concatenate([f.obs[agent] for f in fragments]))
        np.testing.assert_array_equal(
            team.actions[agent], np.concatenate([f.actions[agent] for f in fragments])
        )
    runner.stop()


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"env_runner_cls": MultiAgentEnvRunner}, "env_runner_cls=.*must be TeamEnvRunner"),
        ({"env_to_module_connector": lambda *a: []}, "env_to_module_connector=.*not supported"),
    ],
)
def test_settings_the_runner_cannot_honour_fail_in_validate(setting, match):
    config = HATRPOConfig().environment("episode_ends").env_runners(**setting)
    with pytest.raises(ValueError, match=match):
        config.validate()
