"""The per-iteration agent order."""

from rllib_hatrpo.updates.sequential_update import AgentOrder

AGENTS = ["a", "b", "c", "d"]


def test_order_is_a_fresh_permutation_each_iteration():
    order = AgentOrder(AGENTS, seed=0)
    draws = [order.next() for _ in range(20)]
    assert all(sorted(d) == AGENTS for d in draws)
    assert len({tuple(d) for d in draws}) > 5  # 24 permutations: 20 draws repeat rarely


def test_order_is_reproducible_from_the_seed():
    a, b, c = AgentOrder(AGENTS, seed=7), AgentOrder(AGENTS, seed=7), AgentOrder(AGENTS, seed=8)
    seq_a = [a.next() for _ in range(10)]
    assert seq_a == [b.next() for _ in range(10)]
    assert seq_a != [c.next() for _ in range(10)]


def test_fixed_order_keeps_agent_order():
    order = AgentOrder(AGENTS, seed=0, fixed=True)
    assert all(order.next() == AGENTS for _ in range(5))


def test_state_round_trip_continues_the_sequence():
    original = AgentOrder(AGENTS, seed=3)
    for _ in range(4):
        original.next()
    restored = AgentOrder(AGENTS, seed=99)
    restored.set_state(original.get_state())
    assert [restored.next() for _ in range(5)] == [original.next() for _ in range(5)]
