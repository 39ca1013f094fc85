"""Benchmarks against RLlib's PPO and the bare simulator: `python -m benchmarks.<script>` from
the repository root (throughput, learning, profile_sampling, mpe_family); `baselines` defines
the compared configs once. Their figures go to `benchmarks/results/`, never into tests."""
