"""The shared critic V(s) on the environment's global state, a learner-only RLModule."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override

from rllib_hatrpo.envs.parallel_state_env import GLOBAL_STATE_KEY
from rllib_hatrpo.modules.networks import NETWORK_DEFAULTS, build_mlp, orthogonal_linear
from rllib_hatrpo.updates.value_normalizer import ValueNormalizer

SHARED_CRITIC_ID = "shared_critic"
_NORMALIZER_PREFIX = "value_normalizer."


class SharedCriticRLModule(TorchRLModule, ValueFunctionAPI):
    """MLP value function over the global state; predicts values in normalized units.

    Built with `learner_only=True`: it never ships to EnvRunners. The value normalizer's
    statistics are buffers of this module, so they are saved and restored with its weights.
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = {**NETWORK_DEFAULTS, **(self.model_config or {})}
        hidden = list(cfg["hidden_sizes"])
        state_dim = int(gym.spaces.flatdim(self.observation_space))
        self.body = build_mlp(state_dim, hidden, cfg["activation"], cfg["layer_norm"])
        self.value_head = orthogonal_linear(hidden[-1] if hidden else state_dim, 1, gain=1.0)
        self.value_normalizer = ValueNormalizer()

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """Normalized V(s) for `batch["state"]`, one value per row."""
        state = batch[GLOBAL_STATE_KEY]
        return self.value_head(self.body(state.reshape(state.shape[0], -1).float())).squeeze(-1)

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {"vf_preds": self.compute_values(batch)}

    @override(TorchRLModule)
    def set_state(self, state: dict[str, Any]) -> None:
        """RLlib's, but with the value normalizer's float64 statistics loaded exactly (RLlib
        casts every float to float32 on the way in, which would shift them on each restore)."""
        super().set_state(state)
        stats = {
            key.removeprefix(_NORMALIZER_PREFIX): torch.as_tensor(np.asarray(v, dtype=np.float64))
            for key, v in state.items()
            if key.startswith(_NORMALIZER_PREFIX)
        }
        if stats:
            self.value_normalizer.load_state_dict(stats)


def value_loss(
    pred: torch.Tensor,
    old_pred: torch.Tensor,
    target: torch.Tensor,
    *,
    value_clip: float,
    huber_delta: float,
) -> torch.Tensor:
    """Clipped Huber value loss: mean of max(huber(R − V), huber(R − V_clipped)).

    V_clipped = V_old + clip(V − V_old, −ε, ε) keeps the critic near its previous predictions
    (PPO-style value clipping, as HARL's critic). All values in normalized units.
    """
    clipped = old_pred + (pred - old_pred).clamp(-value_clip, value_clip)  # V_clipped
    loss_unclipped = torch.nn.functional.huber_loss(
        pred, target, delta=huber_delta, reduction="none"
    )
    loss_clipped = torch.nn.functional.huber_loss(
        clipped, target, delta=huber_delta, reduction="none"
    )
    return torch.max(loss_unclipped, loss_clipped).mean()
