"""Where a results file came from, written beside it as JSON: the commit (and whether the tree
had changes), the command, the environment variables that change its figures, the machine, the
versions, the date and a free-text note."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

SETTINGS_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAY_worker_niceness")
"""Environment variables that change a run's speed (thread counts, Ray's worker niceness) or,
through the thread count, its float rounding and so its trajectory."""


CODE = ("--", ".", ":(exclude)benchmarks/results")
"""The paths whose changes `uncommitted_changes` reports: all but the results the benchmarks
write (a run's own rows, appended as it goes, are not a change to the code it ran)."""


def provenance(note: str = "") -> dict[str, Any]:
    """This run's commit, command, settings variables, machine, versions, date and `note`."""
    import mujoco
    import ray
    import torch

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no", *CODE)),
        "command": shlex.join([Path(sys.executable).name, "-m", _module(), *sys.argv[1:]]),
        "environment": " ".join(
            f"{name}={os.environ[name]}" for name in SETTINGS_VARIABLES if name in os.environ
        ),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "versions": f"Python {platform.python_version()}, Ray {ray.__version__}, torch "
        f"{torch.__version__}, mujoco {mujoco.__version__}",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "note": note,
    }


def write_provenance(results_file: Path, meta: dict[str, Any], *, append: bool = False) -> Path:
    """Writes `[meta]` as `<results file without suffix>.json` beside the results file; with
    `append`, after the entries already there (a results file that several runs wrote, e.g.
    a learning run resumed after a stop)."""
    path = results_file.with_suffix(".json")
    entries = json.loads(path.read_text()) if append and path.exists() else []
    path.write_text(json.dumps([*entries, meta], indent=2) + "\n")
    return path


def _module() -> str:
    """The `python -m` name of the running script (its path when run as a file)."""
    main = Path(sys.argv[0]).resolve()
    try:
        return ".".join(main.relative_to(REPO_ROOT).with_suffix("").parts)
    except ValueError:
        return str(main)
