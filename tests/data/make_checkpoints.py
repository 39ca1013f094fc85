"""Writes the small checkpoints in tests/data/checkpoints_0.1.0/, one per algorithm, with the
code of commit 67bbab8 (version 0.1.0's flat module layout), for the test that checkpoints
written before a module move still restore.

    python tests/data/make_checkpoints.py tests/data/checkpoints_0.1.0
"""

import sys

import ray

from rllib_hatrpo.operations.checkpointing import save_checkpoint
from rllib_hatrpo.registry import algorithm_class

OLD_CHECKPOINTS = {
    "HATRPO": "simple_spread_v3",
    "HAPPO": "simple_speaker_listener_v4",
    "HAA2C": "simple_spread_v3",
    "TRPO": "Pendulum-v1",
}
"""Each algorithm's env; one iteration of 100 env steps, hidden [8], seed 0."""

if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for name, env in OLD_CHECKPOINTS.items():
        config = (
            algorithm_class(name)
            .get_default_config()
            .environment(env)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
            .training(train_batch_size_per_learner=100, hidden_sizes=[8])
            .debugging(seed=0)
        )
        algo = config.build_algo()
        algo.train()
        save_checkpoint(algo, f"{sys.argv[1]}/{name.lower()}")
        algo.stop()
    ray.shutdown()
