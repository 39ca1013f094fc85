"""One agent's policy: an RLModule that EnvRunners sample from and the learner steps."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
)
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override

from rllib_hatrpo.modules.linearization import JVP, Tangents, linearize_layers
from rllib_hatrpo.modules.networks import NETWORK_DEFAULTS, build_mlp, orthogonal_linear

# A finite stand-in for −inf: masked actions get probability exactly 0 and the KL stays finite.
MASKED_LOGIT = -1e8

DEFAULT_ACTOR_CONFIG: dict[str, Any] = {
    **NETWORK_DEFAULTS,
    # Gaussian std = sigmoid(log_std / std_x_coef) * std_y_coef, log_std starting at std_x_coef.
    "std_x_coef": 1.0,
    "std_y_coef": 0.5,
}


class ActorRLModule(TorchRLModule):
    """MLP policy with a Gaussian head (Box actions) or a Categorical head (Discrete actions).

    A Categorical head honours an action mask when the observation is
    {"observation": ..., "action_mask": ...}: masked actions are never sampled.

    The Gaussian's std is state-independent and bounded: std = sigmoid(log_std / x) · y, so a
    trust-region step can never blow it up (HARL's parameterization).
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = {**DEFAULT_ACTOR_CONFIG, **(self.model_config or {})}
        self.masked = isinstance(self.observation_space, gym.spaces.Dict)
        obs_space = self.observation_space["observation"] if self.masked else self.observation_space
        obs_dim = int(gym.spaces.flatdim(obs_space))
        hidden = list(cfg["hidden_sizes"])
        self.body = build_mlp(obs_dim, hidden, cfg["activation"], cfg["layer_norm"])
        feature_dim = hidden[-1] if hidden else obs_dim
        if isinstance(self.action_space, gym.spaces.Box):
            act_dim = int(np.prod(self.action_space.shape))
            self.head = orthogonal_linear(feature_dim, act_dim, gain=0.01)
            self.std_x_coef = float(cfg["std_x_coef"])
            self.std_y_coef = float(cfg["std_y_coef"])
            self.log_std = torch.nn.Parameter(torch.full((act_dim,), self.std_x_coef))
            self.action_dist_cls = TorchDiagGaussian
        elif isinstance(self.action_space, gym.spaces.Discrete):
            self.head = orthogonal_linear(feature_dim, int(self.action_space.n), gain=0.01)
            self.action_dist_cls = TorchCategorical
        else:
            raise ValueError(f"action_space must be Box or Discrete, got {self.action_space}")

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs, mask = self._split(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: self._dist_inputs(self.head(self.body(obs)), mask)}

    def linearize(self, obs: Any) -> tuple[torch.Tensor, JVP]:
        """The action distribution inputs on `obs` (as `forward_train` computes them, with
        autograd) and their Jacobian-vector product at the current parameters, for the
        trust-region step's Fisher-vector products."""
        obs, mask = self._split(obs)
        out, body_jvp = linearize_layers([*self.body, self.head], obs)

        def jvp(tangents: Tangents) -> torch.Tensor:
            d = body_jvp(tangents)
            if mask is not None:
                d = d.masked_fill(mask <= 0, 0.0)  # masked logits are constants
            if self.action_dist_cls is TorchDiagGaussian:
                # d log(sigmoid(s/x)·y) / ds = (1 − sigmoid(s/x)) / x
                slope = (1.0 - torch.sigmoid(self.log_std.detach() / self.std_x_coef)) / (
                    self.std_x_coef
                )
                d_log_std = slope * tangents.get(self.log_std, torch.zeros_like(slope))
                d = torch.cat([d, d_log_std.expand_as(d)], dim=-1)
            return d

        return self._dist_inputs(out, mask), jvp

    def _split(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The flat float observation rows and the action mask (None when unmasked)."""
        mask = None
        if self.masked:
            obs, mask = obs["observation"], obs["action_mask"]
        return obs.reshape(obs.shape[0], -1).float(), mask

    def _dist_inputs(self, out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The head's output `out` made the action distribution's inputs."""
        if mask is not None:
            out = out.masked_fill(mask <= 0, MASKED_LOGIT)  # masked actions get probability 0
        if self.action_dist_cls is TorchDiagGaussian:
            std = torch.sigmoid(self.log_std / self.std_x_coef) * self.std_y_coef  # bounded std
            out = torch.cat([out, torch.log(std).expand_as(out)], dim=-1)
        return out
