"""The learner's speedups leave its step unchanged: one HATRPO and one HAPPO update on a fixed
batch end at the parameters recorded before them (`tests/data/learner_steps.pt`, written by
`learner_steps.py` at the commit it names), to 1e-6 relative on each module's parameters.

HATRPO's Fisher-vector products now take J v in forward mode instead of reverse-over-reverse;
both round differently in float32, and conjugate gradient carries that into the step: at the
change, each actor's parameters moved by 0.6–1.2e-7 of their norm (at most 2e-6 in absolute
value per entry; only tensors of norm ~1e-5, biases barely moved from zero, showed relative
changes up to 1e-3)."""

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
    modules = {key.split(".", 1)[0] for key in reference}
    for module in modules:
        keys = [k for k in reference if k.split(".", 1)[0] == module]
        expected = torch.cat([reference[k].reshape(-1) for k in keys])
        actual = torch.cat([updated[k].reshape(-1) for k in keys])
        error = (actual - expected).norm() / expected.norm()
        assert error <= 1e-6, (module, float(error))
