"""MaMuJoCo's observations as index gathers from MuJoCo's data arrays, found by probing.

`gymnasium_robotics.mamujoco_v1` builds every agent's observation with a Python walk over its
joint graph (`obsk.build_obs`), and the global state with the Gymnasium task's `_get_obs`. Both
only copy entries of `MjData` fields (`qpos`, `qvel`, body rows of `cinert`, `cvel`,
`cfrc_ext`, `xpos`, ...), some clipped to a range. :func:`probe_gather` finds which entries and
which clip bounds by calling the library's own function once on tagged data (every entry of
every field a distinct value in (0, 0.5)) and twice on data set to ±1e9 (the clipped outputs
show their bounds). Any output that is not a copied entry (a sine, a difference of two bodies'
positions) makes the probe fail, and the caller keeps the library's path.

:class:`GatherSpec` then computes that function for many env copies at once: one fancy index
into a (copies, source) matrix and one clip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

FIELDS: tuple[str, ...] = ("qpos", "qvel", "qfrc_actuator", "xpos", "cinert", "cvel", "cfrc_ext")
"""The `MjData` fields an observation may copy from (the library's `build_obs` categories, and
the bodies' positions that Pusher's observations read)."""

_BIG = 1e9
"""A value beyond every clip bound of the Gymnasium tasks and the library (1 and 10)."""


@dataclass(frozen=True)
class SourceLayout:
    """Where each used `MjData` field sits in a copy's source row.

    Attributes:
        fields: The fields, in row order.
        slices: Per field, its columns in the row.
        width: The row's length.
    """

    fields: tuple[str, ...]
    slices: dict[str, slice]
    width: int

    @classmethod
    def of(cls, data: mujoco.MjData, fields: Sequence[str] = FIELDS) -> SourceLayout:
        """The layout of `fields` of `data`, flattened in `FIELDS` order."""
        slices, start = {}, 0
        for field in FIELDS:
            if field in fields:
                size = getattr(data, field).size
                slices[field] = slice(start, start + size)
                start += size
        return cls(tuple(slices), slices, start)

    def copies(self, row: np.ndarray, data: mujoco.MjData) -> list[tuple[np.ndarray, np.ndarray]]:
        """(destination, source) view pairs that fill `row` (one copy's source row) from
        `data`'s fields: made once, since `MjData` keeps its arrays for its lifetime."""
        return [(row[columns], getattr(data, f).reshape(-1)) for f, columns in self.slices.items()]


@dataclass(frozen=True)
class GatherSpec:
    """An observation as `clip(source[index], low, high)`.

    Attributes:
        index: Source columns, one per observation entry.
        low, high: Per entry clip bounds (±inf where the entry is not clipped).
    """

    index: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __call__(self, source: np.ndarray) -> np.ndarray:
        """The observations of every copy (rows of `source`) as float64 rows."""
        gathered = source[:, self.index]
        if self.clipped:
            np.clip(gathered, self.low, self.high, out=gathered)
        return gathered

    @functools.cached_property
    def clipped(self) -> bool:
        """Whether any entry is clipped."""
        return bool(np.isfinite(self.low).any() or np.isfinite(self.high).any())

    def restricted(self, layout: SourceLayout, full: SourceLayout) -> GatherSpec:
        """This spec (columns of `full`) re-indexed into the columns of `layout`, a subset."""
        remap = np.full(full.width, -1)
        for field in layout.fields:
            remap[full.slices[field]] = np.arange(layout.width)[layout.slices[field]]
        return GatherSpec(remap[self.index], self.low, self.high)

    def fields(self, layout: SourceLayout) -> set[str]:
        """The fields of `layout` this spec reads."""
        return {
            f
            for f, s in layout.slices.items()
            if np.any((self.index >= s.start) & (self.index < s.stop))
        }


def probe_gather(
    observe: Callable[[mujoco.MjData], np.ndarray], data: mujoco.MjData, layout: SourceLayout
) -> GatherSpec | None:
    """The gather that reproduces `observe(data)`, or None if `observe` computes anything but
    (clipped) copies of `data`'s entries.

    Args:
        observe: The library's observation function, reading `data` (which the probe
            overwrites: pass a scratch `MjData`).
        data: Scratch data of the task's model.
        layout: The fields to probe, all of `FIELDS` normally.
    """
    tags = (np.arange(layout.width) + 1.0) / (2.0 * (layout.width + 1))  # distinct, in (0, 0.5)
    _write(data, layout, tags)
    tagged = np.asarray(observe(data), dtype=np.float64).reshape(-1)
    position = {value: column for column, value in enumerate(tags.tolist())}
    index = [position.get(value) for value in tagged.tolist()]
    if any(i is None for i in index):
        return None
    bounds = []
    for sign in (-1.0, 1.0):
        _write(data, layout, np.full(layout.width, sign * _BIG))
        out = np.asarray(observe(data), dtype=np.float64).reshape(-1)
        if out.shape != tagged.shape or np.any(np.abs(out) > _BIG):
            return None
        bounds.append(np.where(np.abs(out) == _BIG, sign * np.inf, out))
    return GatherSpec(np.array(index, dtype=np.intp), bounds[0], bounds[1])


def _write(data: mujoco.MjData, layout: SourceLayout, row: np.ndarray) -> None:
    """Writes `row` into `data`'s fields (the inverse of `SourceLayout.copies`)."""
    for field, columns in layout.slices.items():
        target = getattr(data, field)
        target[...] = row[columns].reshape(target.shape)
