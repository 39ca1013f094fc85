"""Data-parallel learners: two learners on the two halves of a batch take the step one learner
takes on the whole batch (gloo on CPU), and stay identical to each other."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from ray.rllib.core import ALL_MODULES
from ray.rllib.utils.metrics import NUM_ENV_STEPS_TRAINED

from rllib_hatrpo import HAPPOConfig, HATRPOConfig
from rllib_hatrpo.algorithms.algorithm import learner_data
from rllib_hatrpo.updates.data_parallel import shard_by_env_steps

HALFCHEETAH_2X3 = {"scenario": "HalfCheetah", "agent_conf": "2x3"}
ORDER = ["agent_1", "agent_0"]


@dataclass
class Fragment:
    steps: int

    def env_steps(self) -> int:
        return self.steps


def test_shards_hold_whole_fragments_with_balanced_steps():
    rng = np.random.default_rng(0)
    fragments = [Fragment(int(n)) for n in rng.integers(1, 200, size=37)]
    shards = shard_by_env_steps(fragments, 3)
    assert sorted(map(id, sum(shards, []))) == sorted(map(id, fragments))  # each exactly once
    sizes = [sum(f.steps for f in s) for s in shards]
    # greedy longest-first: the shards differ by at most the largest fragment
    assert max(sizes) - min(sizes) <= max(f.steps for f in fragments)
    assert shard_by_env_steps([Fragment(5), Fragment(3)], 2) == [[Fragment(5)], [Fragment(3)]]


def test_more_learners_than_fragments_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match="num_learners=3.*num_envs_per_env_runner"):
        shard_by_env_steps([Fragment(10), Fragment(10)], 3)


def test_more_learners_than_env_copies_fails_in_validate():
    config = _config(HATRPOConfig, 5)  # 4 env copies on the local EnvRunner
    with pytest.raises(
        ValueError, match=r"num_learners=5 \(int\) is invalid.*\[0, 4\].*env copies"
    ):
        config.validate()


def _config(config_cls, num_learners: int, **training):
    return (
        config_cls()
        .environment("mamujoco", env_config=HALFCHEETAH_2X3)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .learners(num_learners=num_learners, num_cpus_per_learner=0.5)
        .training(train_batch_size_per_learner=400, hidden_sizes=[16], **training)
        .debugging(seed=3)
    )


def _assert_in_sync(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for module_id in expected:
        for name, value in expected[module_id].items():
            got = torch.as_tensor(actual[module_id][name])
            assert torch.equal(got, torch.as_tensor(value)), (module_id, name)


def _assert_same_step(actual: dict, expected: dict, start: dict) -> None:
    """Each module moved from `start` by the same step, to float tolerance: ‖Δ − Δ_ref‖ ≤
    1e-3 ‖Δ_ref‖ (CG amplifies float32 summation-order noise, so elementwise relative checks
    on near-zero entries would test the noise, not the step)."""
    assert actual.keys() == expected.keys()
    for module_id in expected:
        names = sorted(expected[module_id])

        def flat(state, names=names, module_id=module_id):
            parts = [torch.as_tensor(state[module_id][n], dtype=torch.float64) for n in names]
            return torch.cat([p.reshape(-1) for p in parts])

        step = flat(expected) - flat(start)
        error = (flat(actual) - flat(expected)).norm()
        assert error <= 1e-3 * step.norm() + 1e-9, (module_id, float(error), float(step.norm()))


@pytest.mark.slow
@pytest.mark.parametrize(
    "config_cls, training",
    [
        (HATRPOConfig, {}),
        (HAPPOConfig, {"ppo_epochs": 2, "actor_minibatches": 1}),
    ],
    ids=["hatrpo", "happo"],
)
def test_two_learners_on_halves_step_like_one_learner_on_the_whole(
    ray_session, config_cls, training
):
    reference = _config(config_cls, 0, **training).build_algo()
    parallel = _config(config_cls, 2, **training).build_algo()
    try:
        learner = reference.learner_group._learner
        group = parallel.learner_group
        # the same starting point: the reference takes the parallel learners' weights
        start = group.get_weights()
        learner.module.set_state(start)
        episodes = reference.env_runner.sample(num_timesteps=800)
        total = sum(e.env_steps() for e in episodes)

        one = learner.update(episodes=episodes, agent_order=ORDER, timesteps={})
        two = group.update(**learner_data(episodes, 2), agent_order=ORDER, timesteps={})

        # each learner trained on its own half, together on the whole batch
        rows = [r[ALL_MODULES][NUM_ENV_STEPS_TRAINED].peek() for r in two]
        assert sum(rows) == total and all(0 < r < total for r in rows)

        states = [r.get() for r in group.foreach_learner(lambda lrn: lrn.module.get_state())]
        _assert_in_sync(states[0], states[1])  # bit for bit
        expected = learner.module.get_state()
        _assert_same_step(states[0], expected, start)
        moved = [
            name
            for name, value in expected["agent_0"].items()
            if not torch.equal(torch.as_tensor(value), torch.as_tensor(start["agent_0"][name]))
        ]
        assert moved, "the update must change the policy for the comparison to mean anything"
        # and the whole iteration: train() with two learners, EnvRunner weights synced
        iteration = parallel.train()
        assert iteration["learners"][ALL_MODULES][NUM_ENV_STEPS_TRAINED] == 800
        synced = parallel.env_runner.module.get_state()
        learned = group.get_weights(module_ids=ORDER)
        _assert_in_sync({a: synced[a] for a in ORDER}, learned)
        for agent in ORDER:
            for result in two:  # every learner reports the whole batch's KL
                kl = result[agent]["mean_kl"].peek()
                assert kl == pytest.approx(one[agent]["mean_kl"].peek(), rel=1e-3)
    finally:
        parallel.stop()
        reference.stop()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="num_gpus_per_learner=1 needs a GPU")
def test_a_learner_on_a_gpu_trains_and_syncs_its_weights(ray_session):
    algo = (
        _config(HATRPOConfig, 1)
        .learners(num_learners=1, num_gpus_per_learner=1, num_cpus_per_learner=1)
        .build_algo()
    )
    try:
        devices = algo.learner_group.foreach_learner(
            lambda lrn: {str(p.device) for p in lrn.module.parameters()}
        )
        assert [d.get() for d in devices] == [{"cuda:0"}]
        result = algo.train()
        assert all(result["learners"][a]["step_accepted"] in (0, 1) for a in ORDER)
        learner_weights = algo.learner_group.get_weights(module_ids=ORDER)
        runner_weights = algo.env_runner.module.get_state()
        for agent in ORDER:
            for name, value in learner_weights[agent].items():
                torch.testing.assert_close(
                    torch.as_tensor(runner_weights[agent][name]).cpu(),
                    torch.as_tensor(value).cpu(),
                )
    finally:
        algo.stop()
