"""HARL's settings where ours differ, as options: `critic_lr` as a schedule (HARL's linear
decay of the critic's rate), the value normalizer updated per critic minibatch, and the last
transition dropped at a time-limit truncation; each checked against a computation written out
here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ray.tune.registry import register_env
from toy_envs import make_episode_ends, make_sum_target

from rllib_hatrpo import HAPPOConfig, HATRPOConfig
from rllib_hatrpo.algorithms import learner as learner_module
from rllib_hatrpo.algorithms.settings import ConfigError
from rllib_hatrpo.app.experiment import ExperimentError, load_experiment, parse_override
from rllib_hatrpo.envs import GLOBAL_STATE_KEY
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID
from rllib_hatrpo.sampling.team_env_runner import TeamEnvRunner
from rllib_hatrpo.sampling.team_fragment import TeamFragment
from rllib_hatrpo.updates.advantages import compute_gae

register_env("harl_options_sum_target", make_sum_target)
register_env("harl_options_episode_ends", make_episode_ends)
QUICK = Path(__file__).resolve().parents[2] / "tune_configs" / "hatrpo_halfcheetah_2x3_quick.yaml"


def config_of(config_cls: type, env: str = "harl_options_sum_target", **training):
    return (
        config_cls()
        .environment(env, env_config={"episode_len": 10} if env.endswith("sum_target") else {})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=40, hidden_sizes=[8], **training)
        .debugging(seed=0)
    )


@pytest.mark.slow  # trains three iterations
@pytest.mark.parametrize("config_cls", [HATRPOConfig, HAPPOConfig])
def test_critic_lr_schedule_is_the_linear_interpolation_at_the_sampled_env_steps(
    ray_session, config_cls
):
    lr0, horizon = 1e-3, 200
    algo = config_of(config_cls, critic_lr=[[0, lr0], [horizon, 0.0]]).build_algo()
    try:
        optimizer = algo.learner_group._learner.get_optimizer(SHARED_CRITIC_ID, "critic")
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr0, rel=1e-6)
        for _ in range(3):
            steps = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
            # after t env steps: lr(t) = lr0 + (0 − lr0) · t / horizon, linear between points
            expected = lr0 + (0.0 - lr0) * steps / horizon
            assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)
        assert steps == 120  # three iterations of 40 env steps
    finally:
        algo.stop()


@pytest.mark.parametrize(
    "critic_lr",
    [0.0, [[0, 1e-3]], [[10, 1e-3], [100, 0.0]], [[0, 1e-3], [0, 0.0]], [[0, -1e-3], [10, 0]]],
)
def test_critic_lr_must_be_a_positive_rate_or_an_rllib_schedule(critic_lr):
    with pytest.raises(ConfigError, match=r"critic_lr=.*a number > 0, or a schedule"):
        config_of(HATRPOConfig, critic_lr=critic_lr).validate()


BETA = 0.9  # the normalizer's decay in these tests (HARL's 0.99999 would hide the updates)
START = {"running_mean": 0.3, "running_mean_sq": 2.0, "debiasing_term": 0.5}


class NormalizerByHand:
    """HARL's ValueNorm written out: m ← βm + (1−β)·mean(x), q ← βq + (1−β)·mean(x²),
    d ← βd + (1−β); mean = m / max(d, 1e-5), var = max(q / max(d, 1e-5) − mean², 1e-2)."""

    def __init__(self) -> None:
        self.m, self.q, self.d = (START[k] for k in START)

    def update(self, x: np.ndarray) -> None:
        self.m = BETA * self.m + (1 - BETA) * float(np.mean(x))
        self.q = BETA * self.q + (1 - BETA) * float(np.mean(x**2))
        self.d = BETA * self.d + (1 - BETA)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        mean = self.m / max(self.d, 1e-5)
        var = max(self.q / max(self.d, 1e-5) - mean**2, 1e-2)
        return (x - mean) / np.sqrt(var)


@pytest.fixture(scope="module", params=[False, True], ids=["per_iteration", "per_minibatch"])
def fitted(request, ray_session):
    """The critic fit of a 12-row batch, 2 epochs of 3 minibatches, recording each loss's rows
    and normalized targets; and the normalizer's statistics afterwards."""
    algo = config_of(
        HATRPOConfig, critic_epochs=2, critic_minibatches=3, value_norm_per_minibatch=request.param
    ).build_algo()
    learner = algo.learner_group._learner
    normalizer = learner.module[SHARED_CRITIC_ID].value_normalizer
    normalizer.beta = BETA
    with torch.no_grad():
        for name, value in START.items():
            getattr(normalizer, name).fill_(value)
    rng = np.random.default_rng(5)
    n = 12
    targets = rng.normal(3.0, 2.0, n)
    recorded = []
    value_loss = learner_module.value_loss

    def spy(pred, old_pred, target, **kwargs):
        # the old predictions are the row numbers (below): they name the minibatch's rows
        recorded.append((old_pred.long().numpy(), target.double().numpy()))
        return value_loss(pred, old_pred, target, **kwargs)

    learner_module.value_loss = spy
    try:
        learner._fit_critic(
            torch.as_tensor(rng.uniform(-1, 1, (n, 4)), dtype=torch.float32),
            torch.arange(n, dtype=torch.float32),
            targets,
            torch.zeros(n, dtype=torch.float64),
        )
    finally:
        learner_module.value_loss = value_loss
    stats = {k: float(getattr(normalizer, k)) for k in START}
    yield request.param, targets, recorded, stats
    algo.stop()


def test_value_normalizer_statistics_and_normalized_targets_by_hand(fitted):
    per_minibatch, targets, recorded, stats = fitted
    assert len(recorded) == 2 * 3
    by_hand = NormalizerByHand()
    if not per_minibatch:  # ours: once per iteration, on all targets
        by_hand.update(targets)
    for rows, normalized in recorded:
        if per_minibatch:  # HARL's: each minibatch's targets, just before its loss
            by_hand.update(targets[rows])
        np.testing.assert_allclose(normalized, by_hand.normalize(targets[rows]), rtol=1e-5)
    assert stats == pytest.approx(
        {"running_mean": by_hand.m, "running_mean_sq": by_hand.q, "debiasing_term": by_hand.d},
        rel=1e-12,
    )
    # not vacuous: every row is fitted in each epoch, and the two schedules differ
    for epoch in (recorded[:3], recorded[3:]):
        assert sorted(np.concatenate([rows for rows, _ in epoch])) == list(range(12))
    once = NormalizerByHand()
    once.update(targets)
    last_rows, last_normalized = recorded[-1]
    moved = np.abs(last_normalized - once.normalize(targets[last_rows])).max()
    assert (moved > 1e-2) == per_minibatch


# Three fragments, γ 0.9, λ 0.8: 3 steps truncated, 2 steps terminated, 1 step truncated.
GAMMA, LAMBDA = 0.9, 0.8
LENGTHS, TERMINATED, TRUNCATED = [3, 2, 1], [False, True, False], [True, False, True]
REWARDS = np.array([1.0, 0.0, 2.0, -1.0, 0.5, 3.0])
VALUES = np.array([0.5, 1.0, -0.5, 2.0, 0.3, 0.2, 7.0, 1.5, 9.0])  # T + 1 per fragment


def test_gae_at_a_truncation_by_hand():
    """HARL's compute_returns with bad_masks: at a truncation the last step's GAE is zeroed
    (its return is V(s_last)), and the step before bootstraps from V(s_last)."""
    harl_adv, harl_tgt = compute_gae(
        REWARDS, VALUES, LENGTHS, TERMINATED, GAMMA, LAMBDA, drop_last=TRUNCATED
    )
    ours_adv, ours_tgt = compute_gae(REWARDS, VALUES, LENGTHS, TERMINATED, GAMMA, LAMBDA)
    # fragment 1, dropping its last transition: A2 = 0; δ1 = 0 + 0.9·(−0.5) − 1.0 = −1.45,
    # A1 = −1.45; δ0 = 1 + 0.9·1.0 − 0.5 = 1.4, A0 = 1.4 + 0.72·(−1.45) = 0.356
    # fragment 2 (terminated, either way): A1 = 0.5 − 0.2 = 0.3;
    # A0 = −1 + 0.9·0.2 − 0.3 + 0.72·0.3 = −0.904
    # fragment 3 (one step, dropped): A0 = 0
    np.testing.assert_allclose(harl_adv, [0.356, -1.45, 0.0, -0.904, 0.3, 0.0], atol=1e-12)
    # R_t = A_t + V(s_t): the dropped steps' targets are their own values (−0.5 and 1.5)
    np.testing.assert_allclose(harl_tgt, [0.856, -0.45, -0.5, -0.604, 0.5, 1.5], atol=1e-12)
    # ours: the last step bootstraps from V(final state): δ2 = 2 + 0.9·2.0 + 0.5 = 4.3,
    # A1 = −1.45 + 0.72·4.3 = 1.646, A0 = 1.4 + 0.72·1.646 = 2.58512; fragment 3:
    # A0 = 3 + 0.9·9.0 − 1.5 = 9.6
    np.testing.assert_allclose(ours_adv, [2.58512, 1.646, 4.3, -0.904, 0.3, 9.6], atol=1e-12)
    np.testing.assert_allclose(ours_tgt, ours_adv + VALUES[[0, 1, 2, 4, 5, 7]], atol=1e-12)


NORM_MEAN, NORM_VAR = 3.0, 4.0


@pytest.fixture(scope="module", params=["final_state", "drop_last"])
def truncation_algo(request, ray_session):
    algo = config_of(
        HATRPOConfig, gamma=GAMMA, lambda_=LAMBDA, truncation_bootstrap=request.param
    ).build_algo()
    yield request.param, algo
    algo.stop()


def test_agents_get_the_standardized_gae_of_the_truncation_setting(truncation_algo, monkeypatch):
    setting, algo = truncation_algo
    learner = algo.learner_group._learner
    critic = learner.module[SHARED_CRITIC_ID]
    with torch.no_grad():  # statistics that make de-normalizing visible: mean 3, variance 4
        critic.value_normalizer.debiasing_term.fill_(1.0)
        critic.value_normalizer.running_mean.fill_(NORM_MEAN)
        critic.value_normalizer.running_mean_sq.fill_(NORM_VAR + NORM_MEAN**2)
    rng = np.random.default_rng(7)
    fragments = [
        TeamFragment(
            obs={a: rng.uniform(0, 1, (n, 2)).astype(np.float32) for a in ("a0", "a1")},
            actions={a: rng.normal(0, 0.5, (n, 1)).astype(np.float32) for a in ("a0", "a1")},
            states=rng.uniform(-1, 1, (n + 1, 4)).astype(np.float32),
            rewards=rng.normal(0, 1, n),
            terminated=term,
            truncated=trunc,
        )
        for n, term, trunc in zip(
            [4, 3, 5], [False, True, False], [True, False, False], strict=True
        )
    ]
    expected = []
    for f in fragments:
        with torch.no_grad():  # V(s) in the env's units: the critic's output de-normalized
            out = critic.compute_values({GLOBAL_STATE_KEY: torch.as_tensor(f.states)})
        v = out.double().numpy() * np.sqrt(NORM_VAR) + NORM_MEAN
        n = len(f)
        dropped = f.truncated and setting == "drop_last"
        last = n - 1 if dropped else n  # steps whose TD errors enter the sums
        for t in range(n):
            # A_t = Σ_k (γλ)^(k−t) δ_k; δ_k = r_k + γ V(s_k+1) − V(s_k), V after termination 0
            a = 0.0
            for k in range(t, last):
                v_next = 0.0 if (f.terminated and k == n - 1) else v[k + 1]
                a += (GAMMA * LAMBDA) ** (k - t) * (f.rewards[k] + GAMMA * v_next - v[k])
            expected.append(a)
    expected = np.array(expected)
    expected = (expected - expected.mean()) / (expected.std(ddof=1) + 1e-5)

    seen = []
    original = learner.agent_step

    def record(module_id, batch, factor, advantages):
        seen.append(advantages.double().numpy())
        return original(module_id, batch, factor, advantages)

    monkeypatch.setattr(learner, "agent_step", record)
    learner.update(episodes=fragments, agent_order=None)
    assert len(seen) == 2
    for advantages in seen:
        np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)


def test_runner_fragments_tell_truncation_from_termination_and_cuts(ray_session):
    config = config_of(HATRPOConfig, "harl_options_episode_ends")
    config.validate()
    runner = TeamEnvRunner(config=config, worker_index=0)
    try:
        fragments = runner.sample(num_timesteps=16) + runner.sample(num_timesteps=16)
        kinds = set()
        for f in fragments:
            step, length = f.states[-1, 0], f.states[0, 1]
            if step == length:  # the episode ended: an even length L terminates, an odd one
                kinds.add("ended")  # truncates
                assert (f.terminated, f.truncated) == (length % 2 == 0, length % 2 == 1)
            else:  # cut by the batch's end
                kinds.add("cut")
                assert not f.terminated and not f.truncated
        assert kinds == {"ended", "cut"}
        assert any(f.truncated for f in fragments) and any(f.terminated for f in fragments)
    finally:
        runner.stop()


def test_experiment_files_take_the_options():
    experiment = load_experiment(
        QUICK,
        [
            parse_override("training.value_norm_per_minibatch=true"),
            parse_override("training.truncation_bootstrap=drop_last"),
            parse_override("training.critic_lr=[[0, 5e-4], [10000000, 0.0]]"),
        ],
    )
    config = experiment.build_config()
    assert config.value_norm_per_minibatch is True
    assert config.truncation_bootstrap == "drop_last"
    assert config.critic_lr == [[0, 5e-4], [10_000_000, 0.0]]
    assert not config.setting_problems()
    # a wrong value is named with its file and key when the file loads
    with pytest.raises(
        ExperimentError, match=r"training.truncation_bootstrap='harl'.*final_state, drop_last"
    ):
        load_experiment(QUICK, [parse_override("training.truncation_bootstrap=harl")])
