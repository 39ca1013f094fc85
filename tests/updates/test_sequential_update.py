"""Tests of rllib_hatrpo.updates.sequential_update: the factor M, the order and the isolation of
agents."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rllib_hatrpo.updates.sequential_update import sequential_update

F64 = torch.float64
OBS_DIM, N_ACTIONS, N_ROWS = 2, 3, 10


def _logp_reference(weight: torch.Tensor, bias: torch.Tensor, obs, actions) -> torch.Tensor:
    """log π(a|s) of a linear-logits Categorical, from a parameter snapshot."""
    logits = obs @ weight.T + bias
    return torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)


@pytest.mark.parametrize("order", [["b", "c", "a"], ["a", "b", "c"], ["c", "a", "b"]])
def test_sequential_update_factor_order_and_isolation(order):
    torch.manual_seed(0)
    agents = ["a", "b", "c"]
    policies = {ag: nn.Linear(OBS_DIM, N_ACTIONS).double() for ag in agents}
    obs = {ag: torch.randn(N_ROWS, OBS_DIM, dtype=F64) for ag in agents}
    with torch.no_grad():
        actions = {
            ag: torch.distributions.Categorical(logits=policies[ag](obs[ag])).sample()
            for ag in agents
        }
    adv = torch.randn(N_ROWS, dtype=F64)

    def logp(ag):
        logits = policies[ag](obs[ag])
        return torch.log_softmax(logits, -1).gather(-1, actions[ag][:, None]).squeeze(-1)

    # snapshots taken before the whole update
    init_params = {ag: [p.detach().clone() for p in policies[ag].parameters()] for ag in agents}
    logp_before = {ag: logp(ag).detach().clone() for ag in agents}

    calls: list[str] = []
    seen_m: dict[str, torch.Tensor] = {}
    m_inside_brute: dict[str, torch.Tensor] = {}

    def agent_step(agent, m):
        calls.append(agent)
        seen_m[agent] = m.clone()
        assert not m.requires_grad
        assert m.shape == (N_ROWS,)
        pos = order.index(agent)
        for later in order[pos:]:  # this agent and those after it: untouched so far
            for p, q in zip(policies[later].parameters(), init_params[later], strict=True):
                assert torch.equal(p, q), f"{later} changed before {agent} stepped"
        for earlier in order[:pos]:  # those before it did move
            assert any(
                not torch.equal(p, q)
                for p, q in zip(policies[earlier].parameters(), init_params[earlier], strict=True)
            )
        # brute-force M from the current parameters of the already-updated agents
        brute = torch.ones(N_ROWS, dtype=F64)
        for earlier in order[:pos]:
            w, b = (p.detach() for p in policies[earlier].parameters())
            lp = _logp_reference(w, b, obs[earlier], actions[earlier])
            brute = brute * torch.exp(lp - logp_before[earlier])
        m_inside_brute[agent] = brute
        # a real update: a few gradient-ascent steps on the M-weighted surrogate
        pol = policies[agent]
        for _ in range(3):
            surr = (m * torch.exp(logp(agent) - logp_before[agent]) * adv).mean()
            grads = torch.autograd.grad(surr, list(pol.parameters()))
            with torch.no_grad():
                for p, g in zip(pol.parameters(), grads, strict=True):
                    p.add_(2.0 * g)
        return ("result", agent, len(calls) - 1)

    def log_ratio(agent):
        return logp(agent) - logp_before[agent]  # carries grad; the loop must not need it

    results, factors = sequential_update(order, N_ROWS, agent_step, log_ratio)

    assert calls == order
    assert list(results) == order and list(factors) == order
    for i, ag in enumerate(order):
        assert results[ag] == ("result", ag, i)

    # brute-force M from the final parameter snapshots
    final_logp = {
        ag: _logp_reference(*(p.detach() for p in policies[ag].parameters()), obs[ag], actions[ag])
        for ag in agents
    }
    for ag in agents:  # every agent moved
        assert not torch.allclose(final_logp[ag], logp_before[ag])
    expected = torch.ones(N_ROWS, dtype=F64)
    for ag in order:
        torch.testing.assert_close(factors[ag], expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(seen_m[ag], expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(m_inside_brute[ag], expected, rtol=1e-12, atol=0)
        assert factors[ag].dtype == F64
        expected = expected * torch.exp(final_logp[ag] - logp_before[ag])

    assert torch.equal(factors[order[0]], torch.ones(N_ROWS, dtype=F64))
    for ag in order[1:]:
        assert not torch.allclose(factors[ag], torch.ones(N_ROWS, dtype=F64))


def test_sequential_update_constant_ratios_closed_form():
    # each agent doubles / triples / halves its own probability on every row
    ratios = {0: 2.0, "x": 3.0, (1, 2): 0.5}
    order = [0, "x", (1, 2)]
    seen = {}

    def agent_step(agent, m):
        seen[agent] = m.clone()
        return agent

    def log_ratio(agent):  # (N, 1) float32: must be flattened and promoted
        return torch.full((4, 1), math.log(ratios[agent]), dtype=torch.float32)

    results, factors = sequential_update(order, 4, agent_step, log_ratio)
    assert results == {0: 0, "x": "x", (1, 2): (1, 2)}
    torch.testing.assert_close(factors[0], torch.ones(4, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(factors["x"], torch.full((4,), 2.0, dtype=F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(factors[(1, 2)], torch.full((4,), 6.0, dtype=F64), rtol=1e-6, atol=0)
    for ag in order:
        assert torch.equal(seen[ag], factors[ag])


def test_sequential_update_row_wise_product():
    # different per-row ratios: M is a row-wise product, not a scalar
    log_ratios = {
        "p": torch.tensor([0.1, -0.2, 0.0], dtype=F64),
        "q": torch.tensor([-0.3, 0.5, 1.0], dtype=F64),
        "r": torch.tensor([9.0, 9.0, 9.0], dtype=F64),
    }
    _, factors = sequential_update(
        ["p", "q", "r"], 3, lambda ag, m: None, lambda ag: log_ratios[ag]
    )
    torch.testing.assert_close(
        factors["r"],
        torch.tensor([math.exp(0.1 - 0.3), math.exp(-0.2 + 0.5), math.exp(1.0)], dtype=F64),
        rtol=1e-14,
        atol=0,
    )


def test_sequential_update_empty_order():
    results, factors = sequential_update([], 5, lambda ag, m: 1 / 0, lambda ag: 1 / 0)
    assert results == {} and factors == {}
