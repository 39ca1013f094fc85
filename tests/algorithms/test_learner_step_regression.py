"""A change meant to speed the learner up must leave its step unchanged: one HATRPO and one HAPPO
update on a fixed batch end at the parameters recorded before (`tests/data/learner_steps.pt`,
written by `learner_steps.py` at the commit it names), to 1e-6 relative on each module's
parameters.

Per module, not per tensor: float32 rounding differs between equivalent computations, and
conjugate gradient carries it into the step. Taking J v in forward mode instead of
reverse-over-reverse, for instance, moved each actor's parameters by 0.6–1.2e-7 of their norm
(at most 2e-6 per entry), while biases barely moved from zero (norms ~1e-5) changed by up to
1e-3 of their own norm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from learner_steps import CONFIGS, updated_parameters

REFERENCE = Path(__file__).parent.parent / "data" / "learner_steps.pt"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_update_equals_the_recorded_step(ray_session, name):
    reference = torch.load(REFERENCE)[name]
    updated = updated_parameters(name)
    assert updated.keys() == reference.keys()
    for module in {key.split(".", 1)[0] for key in reference}:
        keys = [k for k in reference if k.split(".", 1)[0] == module]
        expected = torch.cat([reference[k].reshape(-1) for k in keys])
        actual = torch.cat([updated[k].reshape(-1) for k in keys])
        error = (actual - expected).norm() / expected.norm()
        assert error <= 1e-6, (module, float(error))
