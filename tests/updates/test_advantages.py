"""Tests of rllib_hatrpo.updates.advantages.compute_gae against a brute-force GAE sum."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_hatrpo.updates.advantages import compute_gae


def _brute_force_gae(rewards, values, lengths, terminated, gamma, lam):
    """A_t = Σ_l (γλ)^l δ_{t+l} within each fragment; target R_t = A_t + V(s_t)."""
    adv, tgt = [], []
    r0 = v0 = 0
    for length, term in zip(lengths, terminated, strict=True):
        r = [float(x) for x in rewards[r0 : r0 + length]]
        v = [float(x) for x in values[v0 : v0 + length + 1]]
        v_next = v[1:]
        if term:
            v_next[-1] = 0.0  # no bootstrap past a terminal state
        deltas = [r[t] + gamma * v_next[t] - v[t] for t in range(length)]
        for t in range(length):
            a = sum((gamma * lam) ** k * deltas[t + k] for k in range(length - t))
            adv.append(a)
            tgt.append(a + v[t])
        r0 += length
        v0 += length + 1
    return np.array(adv), np.array(tgt)


def test_compute_gae_two_fragments_truncated_then_terminated():
    gamma, lam = 0.9, 0.8
    # fragment 1: 3 steps, truncated -> bootstraps from V = 2.0 (values[3])
    # fragment 2: 2 steps, terminated -> its last value (7.0) must be ignored
    rewards = np.array([1.0, 0.0, 2.0, -1.0, 0.5])
    values = np.array([0.5, 1.0, -0.5, 2.0, 0.3, 0.2, 7.0])
    values_copy = values.copy()
    adv, tgt = compute_gae(rewards, values, [3, 2], [False, True], gamma, lam)

    exp_adv, exp_tgt = _brute_force_gae(rewards, values, [3, 2], [False, True], gamma, lam)
    np.testing.assert_allclose(adv, exp_adv, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(tgt, exp_tgt, rtol=1e-13, atol=1e-14)
    assert adv.shape == (5,) and tgt.shape == (5,)
    assert adv.dtype == np.float64 and tgt.dtype == np.float64
    np.testing.assert_array_equal(values, values_copy)  # inputs not modified

    # a few entries by hand
    # fragment 2, last step (terminal): δ = r − V = 0.5 − 0.2
    assert adv[4] == pytest.approx(0.5 - 0.2, abs=1e-14)
    # fragment 2, first step: δ0 = −1 + 0.9·0.2 − 0.3 = −1.12; A = δ0 + 0.72·0.3
    assert adv[3] == pytest.approx(-1.12 + 0.72 * 0.3, abs=1e-14)
    # fragment 1, last step (truncated): δ = 2 + 0.9·2.0 − (−0.5) = 4.3
    assert adv[2] == pytest.approx(4.3, abs=1e-14)
    # fragment 1, middle: δ1 = 0 + 0.9·(−0.5) − 1 = −1.45; A = −1.45 + 0.72·4.3
    assert adv[1] == pytest.approx(-1.45 + 0.72 * 4.3, abs=1e-14)
    # fragment 1, first: δ0 = 1 + 0.9·1 − 0.5 = 1.4; A = 1.4 + 0.72·A1
    assert adv[0] == pytest.approx(1.4 + 0.72 * (-1.45 + 0.72 * 4.3), abs=1e-14)
    np.testing.assert_allclose(tgt, adv + values[[0, 1, 2, 4, 5]], rtol=0, atol=1e-14)


def test_compute_gae_lambda_one_gives_discounted_returns_and_lambda_zero_td_errors():
    rng = np.random.default_rng(0)
    lengths, terminated = [4, 1, 3], [True, False, False]
    n = sum(lengths)
    rewards = rng.normal(size=n)
    values = rng.normal(size=n + len(lengths))
    gamma = 0.95

    # λ = 1: the target is the discounted return plus γ^(T−t) V_boot (0 when terminated)
    _, tgt = compute_gae(rewards, values, lengths, terminated, gamma, 1.0)
    expected = []
    r0 = v0 = 0
    for length, term in zip(lengths, terminated, strict=True):
        boot = 0.0 if term else values[v0 + length]
        for t in range(length):
            ret = sum(gamma**k * rewards[r0 + t + k] for k in range(length - t))
            expected.append(ret + gamma ** (length - t) * boot)
        r0 += length
        v0 += length + 1
    np.testing.assert_allclose(tgt, expected, rtol=1e-12, atol=1e-12)

    # λ = 0: the advantage is the one-step TD error
    adv, _ = compute_gae(rewards, values, lengths, terminated, gamma, 0.0)
    expected = []
    r0 = v0 = 0
    for length, term in zip(lengths, terminated, strict=True):
        for t in range(length):
            v_next = 0.0 if (term and t == length - 1) else values[v0 + t + 1]
            expected.append(rewards[r0 + t] + gamma * v_next - values[v0 + t])
        r0 += length
        v0 += length + 1
    np.testing.assert_allclose(adv, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compute_gae_random_fragments_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 7, size=4)]
    terminated = [bool(x) for x in rng.integers(0, 2, size=4)]
    n = sum(lengths)
    rewards = rng.normal(size=n).astype(np.float32)  # float32 input is promoted
    values = rng.normal(size=n + 4)
    gamma, lam = 0.99, 0.95
    adv, tgt = compute_gae(rewards, values, lengths, terminated, gamma, lam)
    exp_adv, exp_tgt = _brute_force_gae(rewards, values, lengths, terminated, gamma, lam)
    np.testing.assert_allclose(adv, exp_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tgt, exp_tgt, rtol=1e-12, atol=1e-12)


def test_compute_gae_fragments_are_independent():
    # changing fragment 2 leaves fragment 1's outputs unchanged, and vice versa
    rewards = np.array([1.0, 2.0, 3.0, 4.0])
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    a1, t1 = compute_gae(rewards, values, [2, 2], [False, False], 0.9, 0.8)
    r2, v2 = rewards.copy(), values.copy()
    r2[2:] += 10.0
    v2[3:] -= 5.0
    a2, t2 = compute_gae(r2, v2, [2, 2], [False, False], 0.9, 0.8)
    np.testing.assert_array_equal(a1[:2], a2[:2])
    np.testing.assert_array_equal(t1[:2], t2[:2])


@pytest.mark.parametrize(
    ("n_rewards", "n_values", "lengths", "terminated", "match"),
    [
        (5, 7, [3, 2], [False], "same length"),
        (4, 7, [3, 2], [False, True], "rewards"),
        (5, 5, [3, 2], [False, True], "values"),  # forgot the bootstrap rows
        (5, 8, [3, 2], [False, True], "values"),
    ],
)
def test_compute_gae_rejects_mismatched_lengths(n_rewards, n_values, lengths, terminated, match):
    with pytest.raises(ValueError, match=match):
        compute_gae(np.zeros(n_rewards), np.zeros(n_values), lengths, terminated, 0.9, 0.8)
