"""HARL's settings where ours differ: `critic_lr` as a schedule (HARL's linear decay of the
critic's rate) and the value normalizer updated per critic minibatch, each checked against a
computation written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.tune.registry import register_env
from toy_envs import make_sum_target

from rllib_hatrpo import HAPPOConfig, HATRPOConfig
from rllib_hatrpo.algorithms import learner as learner_module
from rllib_hatrpo.algorithms.settings import ConfigError
from rllib_hatrpo.modules.shared_critic import SHARED_CRITIC_ID

register_env("harl_options_sum_target", make_sum_target)


def config_of(config_cls: type, **training):
    return (
        config_cls()
        .environment("harl_options_sum_target", env_config={"episode_len": 10})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=40, hidden_sizes=[8], **training)
        .debugging(seed=0)
    )


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
