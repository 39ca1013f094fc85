"""One HATRPO and one HAPPO learner update on a fixed batch, for the regression test that the
learner's speedups leave its step unchanged (`test_learner_step_regression.py`).

The batch is hand-made (three fragments of a two-agent team, 150 rows), the networks HARL's
shape at a smaller width (two 64-unit layers with LayerNorm), the weights those of seed 0; the
agent order is fixed. `python tests/algorithms/learner_steps.py tests/data/learner_steps.pt`
recorded the reference with the code of the commit named in the file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

import numpy as np
import torch
from ray.tune.registry import register_env
from toy_envs import make_sum_target

from rllib_hatrpo import HAPPOConfig, HATRPOConfig
from rllib_hatrpo.sampling.team_fragment import TeamFragment

register_env("learner_steps_sum_target", make_sum_target)

AGENTS = ("a0", "a1")
CONFIGS = {
    "HATRPO": lambda: HATRPOConfig().training(kl_threshold=0.01),
    "HAPPO": lambda: HAPPOConfig().training(lr=5e-4, ppo_epochs=5, actor_minibatches=2),
}


def random_fragments(ends: Iterable[tuple[int, bool]], seed: int = 0) -> list[TeamFragment]:
    """Fragments of the two-agent sum-target team (2-dim observations, 1-dim actions, 4-dim
    states) with random contents, one per (length, terminated) of `ends`."""
    rng = np.random.default_rng(seed)
    return [
        TeamFragment(
            obs={a: rng.uniform(0, 1, (n, 2)).astype(np.float32) for a in AGENTS},
            actions={a: rng.normal(0, 0.5, (n, 1)).astype(np.float32) for a in AGENTS},
            states=rng.uniform(-1, 1, (n + 1, 4)).astype(np.float32),
            rewards=rng.normal(0, 1, n),
            terminated=terminated,
        )
        for n, terminated in ends
    ]


def fragments() -> list[TeamFragment]:
    """The fixed batch of the regression test: 150 rows in three fragments."""
    return random_fragments(((60, True), (50, False), (40, False)))


def updated_parameters(name: str) -> dict[str, torch.Tensor]:
    """Every module's parameters after one update of `name` on :func:`fragments`."""
    config = (
        CONFIGS[name]()
        .environment("learner_steps_sum_target")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .training(hidden_sizes=[64, 64])
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        learner = algo.learner_group._learner
        torch.manual_seed(0)
        learner.update(episodes=fragments(), agent_order=list(AGENTS))
        return {
            f"{module_id}.{name}": p.detach().clone()
            for module_id in learner.module.keys()
            for name, p in learner.module[module_id].named_parameters()
        }
    finally:
        algo.stop()


if __name__ == "__main__":
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    torch.save(
        {"commit": commit.stdout.strip(), **{n: updated_parameters(n) for n in CONFIGS}},
        sys.argv[1],
    )
