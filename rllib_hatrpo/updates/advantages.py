"""Generalized advantage estimation on the team reward, one rollout fragment at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    fragment_lengths: Sequence[int],
    terminated: Sequence[bool],
    gamma: float,
    lambda_: float,
    drop_last: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets for concatenated rollout fragments.

    `rewards` has one row per env step (N rows); `values` has one row per observation, i.e.
    each fragment of length T contributes T + 1 values, the last being V of the observation
    after its final step. A fragment that ended by termination does not bootstrap (its last
    value counts as 0); a truncated or merely cut fragment bootstraps from that last value.

    A fragment flagged in `drop_last` (HARL's handling of a time-limit truncation) drops its
    last transition instead: that step's advantage is 0 and its target V(s_last), and the
    earlier steps bootstrap from V(s_last), the value of the last step's own state.

    Returns (advantages, value_targets), both with N rows.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(fragment_lengths) != len(terminated):
        raise ValueError("fragment_lengths and terminated must have the same length")
    if rewards.shape[0] != sum(fragment_lengths):
        raise ValueError("rewards must have sum(fragment_lengths) rows")
    if values.shape[0] != sum(fragment_lengths) + len(fragment_lengths):
        raise ValueError("values must have sum(fragment_lengths) + num_fragments rows")
    if drop_last is None:
        drop_last = [False] * len(fragment_lengths)
    if len(drop_last) != len(fragment_lengths):
        raise ValueError("fragment_lengths and drop_last must have the same length")

    advantages = np.empty_like(rewards)
    targets = np.empty_like(rewards)
    r0 = v0 = 0
    for length, term, drop in zip(fragment_lengths, terminated, drop_last, strict=True):
        v = values[v0 : v0 + length + 1].copy()
        if term:
            v[-1] = 0.0
        last = 0.0
        steps = length
        if drop:
            # HARL's bad_mask: A_T−1 = 0 (so R_T−1 = V(s_T−1)); step T−2 bootstraps from V(s_T−1)
            advantages[r0 + length - 1] = 0.0
            steps = length - 1
        for t in range(steps - 1, -1, -1):
            # TD error δ_t = r_t + γV(s_t+1) − V(s_t)
            delta = rewards[r0 + t] + gamma * v[t + 1] - v[t]
            # GAE: A_t = δ_t + γλ A_t+1 (Schulman et al. 2016, eq. 16)
            last = delta + gamma * lambda_ * last
            advantages[r0 + t] = last
        targets[r0 : r0 + length] = advantages[r0 : r0 + length] + v[:length]  # R_t = A_t + V(s_t)
        r0 += length
        v0 += length + 1
    return advantages, targets
