"""Checkpoints that are never half-written: save beside the target, then swap in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ray.rllib.algorithms.algorithm import Algorithm


def save_checkpoint(algo: Algorithm, path: str | os.PathLike) -> Path:
    """Saves `algo` to `path`; a crash at any moment leaves either the old or the new one.

    The checkpoint is written to `path.tmp`, then the old `path` is moved to `path.old` and the
    new one renamed into place (renames within a folder are atomic), then `path.old` removed.
    `restore_path` finds the survivor after a crash between the two renames.
    """
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp.resolve()))
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def restore_path(path: str | os.PathLike) -> Path:
    """The complete checkpoint saved under `path` (or its `.old` twin after a crash)."""
    path = Path(path)
    if path.exists():
        return path
    old = path.with_name(path.name + ".old")
    if old.exists():
        return old
    raise FileNotFoundError(f"checkpoint: no checkpoint at {path}")
