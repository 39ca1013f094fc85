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
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets for concatenated rollout fragments.

    `rewards` has one row per env step (N rows); `values` has one row per observation, i.e.
    each fragment of length T contributes T + 1 values, the last being V of the observation
    after its final step. A fragment that ended by termination does not bootstrap (its last
    value counts as 0); a truncated or merely cut fragment bootstraps from that last value.

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

    advantages = np.empty_like(rewards)
    targets = np.empty_like(rewards)
    r0 = v0 = 0
    for length, term in zip(fragment_lengths, terminated, strict=True):
        v = values[v0 : v0 + length + 1].copy()
        if term:
            v[-1] = 0.0
        last = 0.0
        for t in range(length - 1, -1, -1):
            # TD error δ_t = r_t + γV(s_t+1) − V(s_t)
            delta = rewards[r0 + t] + gamma * v[t + 1] - v[t]
            # GAE: A_t = δ_t + γλ A_t+1 (Schulman et al. 2016, eq. 16)
            last = delta + gamma * lambda_ * last
            advantages[r0 + t] = last
        targets[r0 : r0 + length] = advantages[r0 : r0 + length] + v[:length]  # R_t = A_t + V(s_t)
        r0 += length
        v0 += length + 1
    return advantages, targets
