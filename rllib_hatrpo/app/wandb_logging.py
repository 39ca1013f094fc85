"""Optional Weights & Biases logging for `rllib-hatrpo train`, `resume`, `tune` and `evaluate`.

Nothing here imports wandb until a run asks for it. Without credentials (no `WANDB_API_KEY`
and no `.netrc` entry for the wandb host) runs go offline: `WANDB_MODE=offline` is set (Tune's
`WandbLoggerCallback` checks the variable, not its `mode` argument, before asking for a key)
and `mode="offline"` is passed to `wandb.init` as well (Ray workers started before the
variable was set do not see it). Offline runs land in `WANDB_DIR`, or else the run directory,
and are uploaded later with `wandb sync <dir>`.
"""

from __future__ import annotations

import json
import math
import netrc
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rllib_hatrpo.app.train import SUMMARY_JSON
from rllib_hatrpo.metrics import TEAM_RETURN

DEFAULT_PROJECT = "rllib-hatrpo"
DEFAULT_HOST = "https://api.wandb.ai"
RUN_ID_FILE = "wandb_run_id"
ROW_METRICS_SKIPPED = ("env_steps", "time_s")
"""progress.csv columns not logged as metrics: env steps is the x axis, wandb times runs."""


def has_credentials() -> bool:
    """Whether wandb can log in: `WANDB_API_KEY`, or a `.netrc` entry (file `$NETRC`, default
    `~/.netrc`) for the host of `WANDB_BASE_URL` (default api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", DEFAULT_HOST)).netloc
    path = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def offline_unless_credentials() -> bool:
    """Sets `WANDB_MODE=offline` when there are no credentials (a `WANDB_MODE` the user set
    wins); returns whether runs will be offline."""
    if "WANDB_MODE" not in os.environ and not has_credentials():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE") == "offline"


def init_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`wandb.init` keywords from an experiment's `wandb` section, offline without a key."""
    kwargs = {"project": DEFAULT_PROJECT, **settings}
    if offline_unless_credentials():
        kwargs["mode"] = "offline"
    return kwargs


def run_id(run_dir: Path) -> str:
    """The wandb run id of a run directory: made once and kept in `run_dir/wandb_run_id`, so
    `resume` and `evaluate` of the directory log into the same run, and two directories
    never share one."""
    path = run_dir / RUN_ID_FILE
    if not path.exists():
        path.write_text(f"{run_dir.name[:40]}-{secrets.token_hex(4)}")
    return path.read_text().strip()


def start_run(
    settings: Mapping[str, Any],
    run_dir: Path,
    config: Mapping[str, Any],
    log: Callable[[str], None] = print,
) -> Any:
    """Starts (or continues) the wandb run of a run directory; metrics are plotted against
    `env_steps`. Prints where the run lives (the offline folder, or its URL)."""
    import wandb

    run = wandb.init(
        id=run_id(run_dir),
        name=run_dir.name,
        resume="allow",
        dir=os.environ.get("WANDB_DIR", str(run_dir)),
        config=dict(config),
        **init_kwargs(settings),
    )
    run.define_metric("env_steps")
    run.define_metric("*", step_metric="env_steps")
    if run.settings.mode == "offline":
        sync_dir = run.settings.sync_dir
        log(f"wandb: offline run in {sync_dir} (upload with `wandb sync {sync_dir}`)")
    else:
        log(f"wandb: {run.url}")
    return run


def result_metrics(result: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, float]:
    """What one iteration logs: env steps, the progress.csv columns, every numeric learner
    diagnostic per module (`learners/agent_0/mean_kl`, ...) and, when the iteration evaluated,
    the evaluation's team return."""
    from ray.rllib.core import ALL_MODULES

    metrics: dict[str, float] = {"env_steps": row["env_steps"]}
    metrics.update(
        {key: value for key, value in row.items() if key not in ROW_METRICS_SKIPPED and value != ""}
    )
    for module, stats in result.get("learners", {}).items():
        if isinstance(stats, Mapping) and module != ALL_MODULES:
            for key, value in stats.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    metrics[f"learners/{module}/{key}"] = value
    evaluation = result.get("evaluation", {}).get(TEAM_RETURN, math.nan)
    if math.isfinite(evaluation):
        metrics[f"evaluation/{TEAM_RETURN}"] = evaluation
    return metrics


def log_evaluation(
    settings: Mapping[str, Any],
    run_dir: Path,
    result: Mapping[str, Any],
    video_path: Path | None = None,
) -> None:
    """Logs an evaluation's numbers (and its video: mp4, gif, webm or ogg) into the wandb run
    of `run_dir`, at the env steps of its summary.json when there is one."""
    import wandb

    metrics: dict[str, Any] = {
        f"evaluation/{key}": value
        for key, value in result.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    summary = run_dir / SUMMARY_JSON
    if summary.exists():
        metrics["env_steps"] = json.loads(summary.read_text())["env_steps"]
    if video_path is not None and video_path.exists():
        metrics["evaluation/video"] = wandb.Video(str(video_path))
    run = start_run(settings, run_dir, {})
    run.log(metrics)
    run.finish()
