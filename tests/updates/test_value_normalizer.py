"""Tests of the critic-side numerics: ValueNormalizer and the clipped Huber `value_loss`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rllib_hatrpo.modules.shared_critic import value_loss
from rllib_hatrpo.updates.value_normalizer import ValueNormalizer

F64 = torch.float64


def _closed_form_stats(batches, beta, min_var):
    """Debiased EMA in closed form: m_K = Σ_i (1−β)β^(K−i) mean(x_i), d_K = 1 − β^K."""
    k = len(batches)
    w = np.array([(1 - beta) * beta ** (k - 1 - i) for i in range(k)])
    m = float(np.sum(w * [np.mean(b) for b in batches]))
    q = float(np.sum(w * [np.mean(np.square(b)) for b in batches]))
    d = 1 - beta**k
    mean = m / d
    var = max(q / d - mean**2, min_var)
    return mean, var


# --------------------------------------------------------------------------------------------
# ValueNormalizer
# --------------------------------------------------------------------------------------------


def test_value_normalizer_initial_state():
    vn = ValueNormalizer(beta=0.9, min_var=0.05)
    mean, var = vn.mean_var()
    assert float(mean) == 0.0
    assert float(var) == pytest.approx(0.05)
    x = torch.tensor([1.0, -2.0], dtype=F64)
    torch.testing.assert_close(vn.normalize(x), x / np.sqrt(0.05), rtol=1e-14, atol=0)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.99999])
def test_value_normalizer_matches_closed_form_debiased_ema(beta):
    rng = np.random.default_rng(0)
    sizes = [7, 20, 3, 50]
    batches = [rng.normal(3.0 + i, 2.0 + 0.5 * i, size=n) for i, n in enumerate(sizes)]
    batches[1] = batches[1].astype(np.float32).astype(np.float64)  # exactly representable
    vn = ValueNormalizer(beta=beta, min_var=1e-2)
    for i, b in enumerate(batches):
        # a column vector, and float32 input for batch 1: all folded in as flat float64
        x = torch.tensor(b).reshape(-1, 1)
        vn.update(x.float() if i == 1 else x)
        mean, var = vn.mean_var()
        exp_mean, exp_var = _closed_form_stats(batches[: i + 1], beta, 1e-2)
        assert float(mean) == pytest.approx(exp_mean, rel=1e-9)
        assert float(var) == pytest.approx(exp_var, rel=1e-7)
    assert vn.running_mean.dtype == F64


def test_value_normalizer_single_batch_is_exactly_debiased():
    # after one update the debiased stats are that batch's mean and (population) variance
    x = torch.tensor([1.0, 2.0, 4.0, 9.0], dtype=F64)
    vn = ValueNormalizer(beta=0.999)
    vn.update(x)
    mean, var = vn.mean_var()
    assert float(mean) == pytest.approx(4.0, rel=1e-10)
    assert float(var) == pytest.approx(float(np.var([1.0, 2.0, 4.0, 9.0])), rel=1e-8)


def test_value_normalizer_normalize_denormalize_are_inverses():
    rng = np.random.default_rng(1)
    vn = ValueNormalizer(beta=0.9)
    for _ in range(3):
        vn.update(torch.tensor(rng.normal(5.0, 3.0, size=32)))
    mean, var = (float(t) for t in vn.mean_var())
    x = torch.tensor(rng.normal(5.0, 3.0, size=16), dtype=F64)
    z = vn.normalize(x)
    np.testing.assert_allclose(z.numpy(), (x.numpy() - mean) / np.sqrt(var), rtol=1e-12)
    torch.testing.assert_close(vn.denormalize(z), x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vn.normalize(vn.denormalize(x)), x, rtol=1e-12, atol=1e-12)
    x32 = x.float()
    assert vn.normalize(x32).dtype == torch.float32
    assert vn.denormalize(x32).dtype == torch.float32
    torch.testing.assert_close(vn.denormalize(vn.normalize(x32)), x32, rtol=1e-5, atol=1e-5)
    # no statistics change from normalizing
    assert (float(vn.mean_var()[0]), float(vn.mean_var()[1])) == (mean, var)


@pytest.mark.parametrize("min_var", [1e-2, 0.5])
def test_value_normalizer_variance_clamped_at_min_var(min_var):
    vn = ValueNormalizer(beta=0.9, min_var=min_var)
    vn.update(torch.full((10,), 3.0, dtype=F64))  # zero variance
    vn.update(torch.tensor([3.0, 3.01, 2.99], dtype=F64))  # tiny variance
    mean, var = vn.mean_var()
    assert float(var) == min_var
    x = torch.tensor([0.0, 3.0, 10.0], dtype=F64)
    torch.testing.assert_close(
        vn.normalize(x), (x - mean) / np.sqrt(min_var), rtol=1e-14, atol=1e-14
    )


def test_value_normalizer_state_dict_round_trip():
    rng = np.random.default_rng(2)
    vn = ValueNormalizer(beta=0.95)
    for _ in range(4):
        vn.update(torch.tensor(rng.normal(-2.0, 4.0, size=25)))
    sd = vn.state_dict()
    assert set(sd) >= {"running_mean", "running_mean_sq", "debiasing_term"}
    assert float(sd["debiasing_term"]) == pytest.approx(1 - 0.95**4, rel=1e-12)

    fresh = ValueNormalizer(beta=0.95)
    fresh.load_state_dict(sd)
    for name in ("running_mean", "running_mean_sq", "debiasing_term"):
        assert torch.equal(getattr(fresh, name), getattr(vn, name))
    for a, b in zip(fresh.mean_var(), vn.mean_var(), strict=True):
        assert torch.equal(a, b)

    # as a submodule, the statistics are part of the parent's checkpoint
    class Critic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(2, 1)
            self.value_normalizer = ValueNormalizer(beta=0.95)

    critic = Critic()
    critic.value_normalizer.load_state_dict(sd)
    parent_sd = critic.state_dict()
    assert torch.equal(parent_sd["value_normalizer.running_mean"], vn.running_mean)
    restored = Critic()
    restored.load_state_dict(parent_sd)
    for a, b in zip(restored.value_normalizer.mean_var(), vn.mean_var(), strict=True):
        assert torch.equal(a, b)
    # the saved copy is independent of later updates
    saved = {k: v.clone() for k, v in sd.items()}
    vn.update(torch.tensor([100.0], dtype=F64))
    assert torch.equal(restored.value_normalizer.running_mean, saved["running_mean"])


# --------------------------------------------------------------------------------------------
# value_loss (rllib_hatrpo.modules.shared_critic)
# --------------------------------------------------------------------------------------------


def _huber(e: float, delta: float) -> float:
    return 0.5 * e * e if abs(e) <= delta else delta * (abs(e) - 0.5 * delta)


def _hand_value_loss(pred, old, target, clip, delta):
    rows = []
    for p, o, r in zip(pred, old, target, strict=True):
        v_clipped = o + min(max(p - o, -clip), clip)
        rows.append(max(_huber(r - p, delta), _huber(r - v_clipped, delta)))
    return sum(rows) / len(rows), rows


# (pred, old_pred, target) with value_clip = 0.2, huber_delta = 1.0
CASES = [
    # clip does not bind, quadratic: err 0.4 -> 0.08
    (0.1, 0.0, 0.5, 0.08),
    # clip binds (V_clipped = 0.2), unclipped larger: err 0.7 -> 0.245 vs err 0.1 -> 0.005
    (1.0, 0.0, 0.3, 0.245),
    # clip binds, clipped larger: err 0.1 -> 0.005 vs err 0.9 -> 0.405
    (1.0, 0.0, 1.1, 0.405),
    # linear regime, no clip: err 3 -> 1·(3 − 0.5) = 2.5
    (0.0, 0.0, 3.0, 2.5),
    # negative side clip (V_clipped = −0.2): err 3.5 -> 3.0 vs err 1.7 -> 1.2
    (-2.0, 0.0, 1.5, 3.0),
    # clip binds, clipped in linear regime: err 1.0 -> 0.5 vs err 2.8 -> 2.3
    (2.0, 0.0, 3.0, 2.3),
    # nonzero old prediction, clip binds: V_clipped = 1.2; err 0.5 -> 0.125 vs err 0.3 -> 0.045
    (2.0, 1.0, 1.5, 0.125),
]


def test_value_loss_hand_computed_cases():
    pred = torch.tensor([c[0] for c in CASES], dtype=F64)
    old = torch.tensor([c[1] for c in CASES], dtype=F64)
    target = torch.tensor([c[2] for c in CASES], dtype=F64)
    expected_rows = [c[3] for c in CASES]
    # the literal values agree with the generic hand formula
    hand, rows = _hand_value_loss(pred.tolist(), old.tolist(), target.tolist(), 0.2, 1.0)
    np.testing.assert_allclose(rows, expected_rows, rtol=1e-12)
    for i in range(len(CASES)):
        got = value_loss(
            pred[i : i + 1], old[i : i + 1], target[i : i + 1], value_clip=0.2, huber_delta=1.0
        )
        assert float(got) == pytest.approx(expected_rows[i], rel=1e-12), CASES[i]
    loss = value_loss(pred, old, target, value_clip=0.2, huber_delta=1.0)
    assert loss.shape == ()
    assert float(loss) == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize(("clip", "delta"), [(0.2, 1.0), (0.5, 0.3), (10.0, 2.0), (0.05, 5.0)])
def test_value_loss_random_against_hand_formula(clip, delta):
    rng = np.random.default_rng(3)
    pred, old, target = (rng.normal(scale=2.0, size=40) for _ in range(3))
    expected, _ = _hand_value_loss(pred, old, target, clip, delta)
    got = value_loss(
        torch.tensor(pred),
        torch.tensor(old),
        torch.tensor(target),
        value_clip=clip,
        huber_delta=delta,
    )
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_value_loss_gradient():
    # row 0: unclipped branch wins (clip does not bind): d/dV = −(R − V)/N (quadratic)
    # row 1: clipped branch wins while clipping binds: V_clipped is constant in V -> zero grad
    # row 2: linear regime, unclipped wins: d/dV = −δ·sign(R − V)/N
    pred = torch.tensor([0.1, 1.0, -2.0], dtype=F64, requires_grad=True)
    old = torch.tensor([0.0, 0.0, 0.0], dtype=F64)
    target = torch.tensor([0.5, 1.1, 1.5], dtype=F64)
    value_loss(pred, old, target, value_clip=0.2, huber_delta=1.0).backward()
    expected = torch.tensor([-(0.5 - 0.1) / 3, 0.0, -1.0 / 3], dtype=F64)
    torch.testing.assert_close(pred.grad, expected, rtol=1e-12, atol=1e-15)
