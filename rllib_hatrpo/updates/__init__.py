"""The math of the update that RLlib lacks, in plain torch: GAE, the agent order and factor M,
the trust-region step, the first-order policy losses, the value normalizer, and the
data-parallel reductions."""
