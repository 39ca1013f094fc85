"""`rllib-hatrpo tune`: Ray Tune over an experiment's search spaces, optionally with ASHA.

The trainable is the algorithm's registered name (`tune.Tuner("HATRPO", ...)`), the param
space the experiment's config with the `search` spaces in place, and trials are ranked by the
team return (`team_return`, which our algorithms add to every result) unless the
`scheduler` names another metric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rllib_hatrpo.app.experiment import Experiment
from rllib_hatrpo.metrics import TEAM_RETURN
from rllib_hatrpo.registry import algorithm_class


def metric_and_mode(experiment: Experiment) -> tuple[str, str]:
    """The metric trials are compared by, and whether larger ("max") or smaller is better."""
    scheduler = experiment.scheduler or {}
    return scheduler.get("metric") or TEAM_RETURN, scheduler.get("mode") or "max"


def make_scheduler(experiment: Experiment) -> Any:
    """Tune's ASHA scheduler from the `scheduler` section (None without one). Its metric and
    mode go to `TuneConfig` instead, which rejects them being set in both places."""
    if not experiment.scheduler:
        return None
    from ray.tune.schedulers import ASHAScheduler

    skip = {"type", "metric", "mode"}
    return ASHAScheduler(**{k: v for k, v in experiment.scheduler.items() if k not in skip})


def run_search(experiment: Experiment, run_dir: Path) -> Any:
    """Runs the search; trials are written under `run_dir`. Returns Tune's `ResultGrid`."""
    from ray import tune

    callbacks = []
    if experiment.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        from rllib_hatrpo.app.wandb_logging import init_kwargs

        callbacks.append(WandbLoggerCallback(**init_kwargs(experiment.wandb)))
    metric, mode = metric_and_mode(experiment)
    tuner = tune.Tuner(
        experiment.algorithm,
        param_space=experiment.param_space(),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=experiment.num_samples,
            scheduler=make_scheduler(experiment),
        ),
        run_config=tune.RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent.resolve()),
            stop=experiment.tune_stop(),
            callbacks=callbacks,
            # The two latest per trial: a checkpoint every iteration (the default) would
            # otherwise fill the disk over a long search.
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=experiment.checkpoint_every,
                checkpoint_at_end=True,
                num_to_keep=2,
            ),
        ),
    )
    return tuner.fit()


def best_trial(experiment: Experiment, results: Any) -> dict[str, Any]:
    """The best trial by the last reported metric: its searched values, metric, env steps,
    directory and checkpoint (raises RuntimeError if no trial reported the metric)."""
    metric, mode = metric_and_mode(experiment)
    best = results.get_best_result(metric=metric, mode=mode, filter_nan_and_inf=True)
    config = algorithm_class(experiment.algorithm).get_default_config()
    config.update_from_dict(best.config)
    return {
        "metric": metric,
        "mode": mode,
        "value": best.metrics[metric],
        "searched": {key: getattr(config, key) for key in experiment.search},
        "env_steps": int(best.metrics["env_runners"]["num_env_steps_sampled_lifetime"]),
        "trial_dir": best.path,
        "checkpoint": best.checkpoint.path if best.checkpoint else None,
    }


def write_best(run_dir: Path, best: dict[str, Any]) -> Path:
    """Saves the best trial's summary as best_trial.json in the search's directory."""
    path = run_dir / "best_trial.json"
    path.write_text(json.dumps(best, indent=2, default=str))
    return path
