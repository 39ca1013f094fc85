"""Checkpoints: written so that a crash never leaves a half-written one, found again after a
crash, checked against the algorithm restoring them, and read piecewise for evaluation.

RLlib's `Algorithm.save_to_path` writes the learner state (actor and critic weights with the
value normalizer's statistics, optimizer states), the metrics logger (step counters), the
training iteration and our agent-order generator; `HAAlgorithm` adds to the checkpoint's
metadata what :func:`check_restorable` compares.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE
from ray.rllib.core.rl_module.rl_module import RLModule

ALGORITHM_KEY = "algorithm"
"""Metadata: the name of the algorithm class that wrote the checkpoint."""
ALGORITHM_CLASSES_KEY = "algorithm_classes"
"""Metadata: that class and its `Algorithm` base classes, by name (what `from_checkpoint`
of a base class accepts)."""
TEAM_KEY = "team"
"""Metadata: the env's agents, policy modules and spaces, see :func:`team_description`."""
CHECKPOINT_DIR = "checkpoint"
"""The checkpoint's folder in a run directory of `rllib-hatrpo train`."""


class CheckpointError(ValueError):
    """A path that holds no checkpoint of ours, or one of another algorithm or team."""


def save_checkpoint(algo: Algorithm, path: str | os.PathLike) -> Path:
    """Saves `algo` to `path`; a crash at any moment leaves either the old or the new one.

    The checkpoint is written to `path.tmp` and flushed to disk, then the old `path` is moved
    to `path.old` and the new one renamed into place (renames within a folder are atomic),
    then `path.old` removed. `restore_path` finds the survivor after a crash between the two
    renames; a leftover `path.tmp` is never read and is removed by the next save.
    """
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        algo.save_to_path(str(tmp.resolve()))
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)  # the renames themselves reach the disk
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


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The absolute path of the algorithm checkpoint at `path`: the folder itself, or the
    checkpoint of the run directory `path` (each, after a crash mid-save, its `.old` twin).

    Raises:
        CheckpointError: If neither holds an algorithm checkpoint.
    """
    path = Path(path).expanduser().resolve()
    for candidate in (path, path / CHECKPOINT_DIR):
        try:
            found = restore_path(candidate)
        except FileNotFoundError:
            continue
        if (found / Algorithm.METADATA_FILE_NAME).exists():
            return found
    raise CheckpointError(
        f"checkpoint: {path} holds no algorithm checkpoint (no {Algorithm.METADATA_FILE_NAME}); "
        f"pass a checkpoint folder such as RUN_DIR/{CHECKPOINT_DIR}, or a run directory of "
        "`rllib-hatrpo train`"
    )


def _fsync_tree(root: Path) -> None:
    """Flushes every file and folder under `root` to disk (a crash then keeps their contents)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def team_description(config: Any) -> dict[str, Any]:
    """The env's agents, policy modules and spaces of an `HAConfig`, JSON-writable.

    Spaces are written as their `str` (kind, bounds, shape, dtype): enough to tell envs apart.
    """
    spaces = config.team_spaces()
    return {
        "agents": list(spaces.agents),
        "policy_modules": list(config.module_ids()),
        "observation_spaces": {a: str(s) for a, s in spaces.observation_spaces.items()},
        "action_spaces": {a: str(s) for a, s in spaces.action_spaces.items()},
        "state_space": str(spaces.state_space),
    }


def algorithm_identity(algo: Algorithm) -> dict[str, Any]:
    """What a checkpoint records about the algorithm that wrote it, for `check_restorable`."""
    cls = type(algo)
    return {
        ALGORITHM_KEY: cls.__name__,
        ALGORITHM_CLASSES_KEY: [c.__name__ for c in cls.__mro__ if issubclass(c, Algorithm)],
        TEAM_KEY: team_description(algo.config),
    }


def read_metadata(path: str | os.PathLike, filesystem: pyarrow.fs.FileSystem | None = None) -> dict:
    """The checkpoint's metadata (`rllib_checkpoint.json`), local or on a pyarrow filesystem."""
    path = os.fspath(path)
    if filesystem is None:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(
            path if "://" in path else os.path.abspath(path)
        )
    file = f"{path.rstrip('/')}/{Algorithm.METADATA_FILE_NAME}"
    try:
        with filesystem.open_input_stream(file) as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint: {path} is no algorithm checkpoint ({err})") from err


def check_checkpoint_class(
    path: str | os.PathLike, cls: type[Algorithm], filesystem: pyarrow.fs.FileSystem | None = None
) -> None:
    """Raises ValueError unless the checkpoint was written by `cls` or a subclass of it."""
    metadata = read_metadata(path, filesystem)
    written_by = _written_by(metadata, path)
    if cls.__name__ not in metadata[ALGORITHM_CLASSES_KEY]:
        raise CheckpointError(
            f"checkpoint {path} holds a {written_by} algorithm; {cls.__name__}.from_checkpoint "
            f"cannot restore it. Use {written_by}.from_checkpoint(...) or "
            "ray.rllib.algorithms.algorithm.Algorithm.from_checkpoint(...)."
        )


def check_restorable(
    path: str | os.PathLike, algo: Algorithm, filesystem: pyarrow.fs.FileSystem | None = None
) -> None:
    """Raises ValueError, naming every difference, unless the checkpoint was written by the same
    algorithm class on the same team (agents, policy modules, spaces) as `algo`."""
    metadata = read_metadata(path, filesystem)
    _written_by(metadata, path)
    current = algorithm_identity(algo)
    saved = {key: metadata.get(key) for key in (ALGORITHM_KEY, TEAM_KEY)}
    differences = _differences(saved, {key: current[key] for key in saved}, "")
    if differences:
        raise CheckpointError(
            f"checkpoint {path} does not fit this {current[ALGORITHM_KEY]} algorithm:\n  "
            + "\n  ".join(differences)
        )


def written_by(path: str | os.PathLike) -> str:
    """The name of the algorithm that wrote the checkpoint at `path`.

    Raises:
        CheckpointError: If rllib_hatrpo did not write it.
    """
    return _written_by(read_metadata(path), path)


def _written_by(metadata: dict, path: Any) -> str:
    """The writing algorithm's name; raises CheckpointError if rllib_hatrpo did not write it."""
    if ALGORITHM_CLASSES_KEY not in metadata:
        raise CheckpointError(
            f"checkpoint {path} was not written by an rllib_hatrpo algorithm (its "
            f"{Algorithm.METADATA_FILE_NAME} names no {ALGORITHM_KEY!r}); restore it with the "
            "algorithm class that wrote it."
        )
    return metadata[ALGORITHM_KEY]


def _differences(saved: Any, current: Any, where: str) -> list[str]:
    """`where: checkpoint has X, this algorithm Y` for every leaf where two dicts differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            line
            for key in sorted(saved.keys() | current.keys())
            for line in _differences(
                saved.get(key), current.get(key), f"{where}.{key}" if where else key
            )
        ]
    if saved == current:
        return []
    return [f"{where}: checkpoint has {saved!r}, this algorithm {current!r}"]


def load_config(path: str | os.PathLike) -> AlgorithmConfig:
    """The `AlgorithmConfig` an algorithm checkpoint was written with (env, env_config, ...)."""
    with open(Path(path) / Algorithm.CLASS_AND_CTOR_ARGS_FILE_NAME, "rb") as f:
        ctor_args, _ = pickle.load(f)["ctor_args_and_kwargs"]
    return AlgorithmConfig.from_state(ctor_args[0])


def load_modules(path: str | os.PathLike, module_ids: list[str]) -> dict[str, RLModule]:
    """The learner's RLModules `module_ids` from an algorithm checkpoint, without building the
    algorithm (RLlib's documented way to restore policies for inference)."""
    modules_dir = Path(path) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE
    return {mid: RLModule.from_checkpoint(modules_dir / mid) for mid in module_ids}
