"""The actors' Jacobian-vector products (`ActorRLModule.linearize`), against autograd's own
forward mode (`torch.func.jvp`) through the module's `forward_train`."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_hatrpo.modules.actor import ActorRLModule

OBS_DIM, ROWS = 5, 64
BOX = gym.spaces.Box(-1, 1, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(4)


def actor(action_space, masked=False, **model_config) -> ActorRLModule:
    obs_space = gym.spaces.Box(-1, 1, (OBS_DIM,), np.float32)
    if masked:
        obs_space = gym.spaces.Dict(
            {"observation": obs_space, "action_mask": gym.spaces.MultiBinary(int(action_space.n))}
        )
    module = ActorRLModule(
        observation_space=obs_space,
        action_space=action_space,
        model_config={"hidden_sizes": [16, 12], **model_config},
    )
    with torch.no_grad():  # every parameter away from its initial value (zero biases, γ = 1)
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def observations(module: ActorRLModule):
    obs = torch.randn(ROWS, OBS_DIM)
    if not module.masked:
        return obs
    mask = (torch.rand(ROWS, module.action_space.n) < 0.6).float()
    mask[:, 0] = 1.0  # at least one legal action per row
    return {"observation": obs, "action_mask": mask}


def reference_jvp(module: ActorRLModule, obs, tangents: list[torch.Tensor]) -> torch.Tensor:
    """J t by autograd's forward mode through `forward_train` (as a function of the
    parameters)."""
    names = [name for name, _ in module.named_parameters()]

    def dist_inputs(*params):
        weights = dict(zip(names, params, strict=True))
        out = torch.func.functional_call(module, weights, ({Columns.OBS: obs},), strict=True)
        return out[Columns.ACTION_DIST_INPUTS]

    primals = tuple(p.detach() for p in module.parameters())
    return torch.func.jvp(dist_inputs, primals, tuple(tangents))[1]


CASES = {
    "gaussian relu layer-norm": (BOX, False, {}),
    "gaussian tanh": (BOX, False, {"activation": "tanh"}),
    "gaussian leaky-relu without layer-norm": (
        BOX,
        False,
        {"activation": "leaky_relu", "layer_norm": False},
    ),
    "gaussian other std scale": (BOX, False, {"std_x_coef": 2.0, "std_y_coef": 0.3}),
    "categorical": (DISCRETE, False, {}),
    "masked categorical": (DISCRETE, True, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_linearize_outputs_and_jvp_match_forward_train_and_autograd(case):
    torch.manual_seed(0)
    space, masked, model_config = CASES[case]
    module = actor(space, masked, **model_config)
    obs = observations(module)
    outputs, jvp = module.linearize(obs)
    expected_outputs = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert torch.equal(outputs, expected_outputs)
    params = list(module.parameters())
    for _ in range(3):
        tangents = [torch.randn_like(p) for p in params]
        expected = reference_jvp(module, obs, tangents)
        actual = jvp(dict(zip(params, tangents, strict=True)))
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
        assert expected.abs().max() > 0.1  # a real change, not zeros on both sides
    if masked:  # masked logits do not move
        assert torch.count_nonzero(actual[obs["action_mask"] <= 0]) == 0
    # the outputs keep their graph: the vector-Jacobian product the Fisher product needs
    grads = torch.autograd.grad(outputs.sum(), params, allow_unused=True)
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("which", ["log_std", "body.0.bias", "head.bias", "body.1.weight"])
def test_jvp_along_one_parameter_and_missing_tangents_are_zero(which):
    torch.manual_seed(1)
    module = actor(BOX)
    obs = observations(module)
    _, jvp = module.linearize(obs)
    named = dict(module.named_parameters())
    tangent = torch.randn_like(named[which])
    tangents = [tangent if name == which else torch.zeros_like(p) for name, p in named.items()]
    actual = jvp({named[which]: tangent})
    assert actual.shape == (ROWS, 2 * BOX.shape[0])
    torch.testing.assert_close(actual, reference_jvp(module, obs, tangents), rtol=1e-4, atol=1e-5)
    assert torch.count_nonzero(jvp({})) == 0
