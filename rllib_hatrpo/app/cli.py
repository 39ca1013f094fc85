"""The `rllib-hatrpo` command (also `python -m rllib_hatrpo.app.cli`): train, tune, evaluate,
resume.

    rllib-hatrpo train tune_configs/hatrpo_halfcheetah_2x3.yaml --set training.kl_threshold=0.02
    rllib-hatrpo tune tune_configs/search/hatrpo_halfcheetah_kl_x_critic_lr.yaml
    rllib-hatrpo evaluate runs/<run>/checkpoint --episodes 10 --video cheetah.mp4
    rllib-hatrpo resume runs/<run>

`train` writes a run directory (default `runs/<file name>-<date>-<time>`) holding the resolved
experiment (`experiment.yaml`), `progress.csv`, `learning_curve.png`, `summary.json` and
`checkpoint/`; `resume` continues it from the checkpoint until the stored stop criterion.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from rllib_hatrpo.algorithms.settings import ConfigError
from rllib_hatrpo.app.experiment import (
    Experiment,
    ExperimentError,
    load_experiment,
    parse_override,
    problems_message,
)
from rllib_hatrpo.app.train import progress_fraction, train
from rllib_hatrpo.operations.checkpointing import (
    CHECKPOINT_DIR,
    CheckpointError,
    find_checkpoint,
    restore_path,
    written_by,
)
from rllib_hatrpo.operations.cluster_check import ResourceError
from rllib_hatrpo.registry import algorithm_class

EXPERIMENT_YAML = "experiment.yaml"
"""The resolved experiment (file plus command-line overrides) saved in every run directory."""


USER_ERRORS = (
    ExperimentError,
    CheckpointError,
    ResourceError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
)
"""Mistakes in what the user gave (files, keys, values, paths, resources): a message, no
traceback, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; returns the exit status (2 for bad arguments, a bad experiment,
    config or path, or one asking for resources the cluster can never provide; 1 when
    training stopped because every EnvRunner was lost for good)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's usage error (status 2) or --help (0)
        return int(exit_.code or 0)
    try:
        return args.command(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be an integer >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rllib-hatrpo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run_options = argparse.ArgumentParser(add_help=False)
    run_options.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the file, e.g. training.kl_threshold=0.02 (a YAML value)",
    )
    run_options.add_argument("--num-env-runners", type=int, metavar="N")
    run_options.add_argument("--stop-timesteps", type=_positive_int, metavar="T", help="env steps")
    run_options.add_argument("--seed", type=int, metavar="S")
    run_options.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    run_options.add_argument("--run-dir", type=Path, metavar="DIR")

    sub = commands.add_parser("train", parents=[run_options], help="train one experiment")
    sub.add_argument("config", type=Path, metavar="CONFIG.yaml")
    sub.set_defaults(command=train_command)

    sub = commands.add_parser("tune", parents=[run_options], help="Ray Tune over `search`")
    sub.add_argument("config", type=Path, metavar="SEARCH.yaml")
    sub.set_defaults(command=tune_command)

    sub = commands.add_parser("evaluate", help="roll out a checkpoint's policy")
    sub.add_argument("checkpoint", type=Path, help="a checkpoint folder, or a run directory")
    sub.add_argument("--episodes", type=_positive_int, default=10)
    sub.add_argument(
        "--video", type=Path, metavar="OUT.mp4", help="record the episodes into this video"
    )
    sub.add_argument("--wandb", action="store_true", help="log into the run's wandb run")
    sub.set_defaults(command=evaluate_command)

    sub = commands.add_parser("resume", help="continue a run directory from its checkpoint")
    sub.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    sub.add_argument(
        "--stop-timesteps", type=_positive_int, metavar="T", help="train on to T env steps instead"
    )
    sub.set_defaults(command=resume_command)
    return parser


def _load(args: argparse.Namespace) -> Experiment:
    """The experiment file with `--set` and the shorthand options applied; `--wandb` turns
    wandb on with the file's `wandb` settings, if any."""
    overrides = [parse_override(text) for text in args.overrides]
    shorthands = {
        "env_runners.num_env_runners": args.num_env_runners,
        "stop.num_env_steps_sampled_lifetime": args.stop_timesteps,
        "seed": args.seed,
    }
    overrides += [(key, value) for key, value in shorthands.items() if value is not None]
    experiment = load_experiment(args.config, overrides)
    if args.wandb and experiment.wandb is None:
        experiment = dataclasses.replace(experiment, wandb={})
    return experiment


def _new_run_dir(args: argparse.Namespace) -> Path:
    return args.run_dir or Path("runs") / f"{args.config.stem}-{datetime.now():%Y%m%d-%H%M%S}"


def _check_config(experiment: Experiment, source: Path) -> Any:
    """The algorithm config, validated before Ray starts: every invalid setting is named with
    its key in the file (exit status 2)."""
    try:
        config = experiment.build_config()
        config.validate()
    except ConfigError as err:
        problems = [experiment.qualified(problem) for problem in err.problems]
        raise ExperimentError(problems_message(str(source), problems)) from None
    except ValueError as err:
        raise ExperimentError(f"{source}: {err}") from None
    return config


def _start_run(args: argparse.Namespace, what: str) -> tuple[Experiment, Any, Path]:
    """The experiment and its validated config (before Ray starts), and the new run
    directory holding the experiment as run, whose path is printed as `what`."""
    experiment = _load(args)
    config = _check_config(experiment, args.config)
    run_dir = _new_run_dir(args)
    _save_experiment(experiment, run_dir)
    print(f"{what}: {run_dir.resolve()}", flush=True)
    return experiment, config, run_dir


def _save_experiment(experiment: Experiment, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(experiment.to_dict(), sort_keys=False)
    (run_dir / EXPERIMENT_YAML).write_text(text)


@contextlib.contextmanager
def ray_session() -> Iterator[None]:
    """A quiet local Ray for the command, unless one is already running (tests, notebooks)."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def train_command(args: argparse.Namespace) -> int:
    """`train CONFIG.yaml`: builds the algorithm and runs the training loop."""
    experiment, config, run_dir = _start_run(args, "run directory")
    with ray_session():
        return _train_run(config.build_algo(), experiment, run_dir)


def resume_command(args: argparse.Namespace) -> int:
    """`resume RUN_DIR`: restores RUN_DIR/checkpoint and trains on to the stored stop (or to
    `--stop-timesteps`, which then becomes the stored stop)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    run_dir: Path = args.run_dir
    overrides = {}
    if args.stop_timesteps is not None:
        overrides["stop"] = {"num_env_steps_sampled_lifetime": args.stop_timesteps}
    experiment = load_experiment(run_dir / EXPERIMENT_YAML, overrides)
    checkpoint = restore_path(run_dir / CHECKPOINT_DIR).resolve()
    if written_by(checkpoint) != experiment.algorithm:
        raise CheckpointError(
            f"{run_dir}: its checkpoint holds a {written_by(checkpoint)} algorithm, but its "
            f"{EXPERIMENT_YAML} names {experiment.algorithm}; resume only a run directory "
            "written by `rllib-hatrpo train`"
        )
    _save_experiment(experiment, run_dir)
    print(f"resuming {run_dir.resolve()} from {checkpoint}", flush=True)
    with ray_session():
        algo = algorithm_class(experiment.algorithm).from_checkpoint(str(checkpoint))
        steps = algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        print(f"restored iteration {algo.iteration}, {int(steps):,} env steps", flush=True)
        if progress_fraction(experiment.stop, int(steps), algo.iteration) >= 1.0:
            algo.stop()
            print(f"already complete: {experiment.stop}", flush=True)
            return 0
        return _train_run(algo, experiment, run_dir)


def _train_run(algo: Any, experiment: Experiment, run_dir: Path) -> int:
    """The training loop with wandb (if the experiment asks for it) around it; the exit
    status (1, with the command that continues the run, if every EnvRunner was lost)."""
    from rllib_hatrpo.algorithms.algorithm import EnvRunnersLostError

    run = on_result = None
    if experiment.wandb is not None:
        from rllib_hatrpo.app import wandb_logging

        run = wandb_logging.start_run(experiment.wandb, run_dir, experiment.to_dict())

        def on_result(result: dict[str, Any], row: dict[str, Any]) -> None:
            run.log(wandb_logging.result_metrics(result, row))

    try:
        summary = train(
            algo, run_dir, experiment.stop, experiment.checkpoint_every, on_result=on_result
        )
    except EnvRunnersLostError as err:
        print(f"error: {str(err).replace('RUN_DIR', str(run_dir))}", file=sys.stderr, flush=True)
        if (run_dir / CHECKPOINT_DIR).exists() or (run_dir / f"{CHECKPOINT_DIR}.old").exists():
            where = restore_path(run_dir / CHECKPOINT_DIR)
            hint = f"the last checkpoint is {where}; continue with: rllib-hatrpo resume {run_dir}"
        else:
            hint = "no checkpoint was written yet: start the run again"
        print(hint, file=sys.stderr, flush=True)
        return 1
    finally:
        algo.stop()
        if run is not None:
            run.finish()
    print(
        f"done: {summary['env_steps']:,} env steps in {summary['time_s']:.0f} s, final team "
        f"return {summary['team_return']}; run directory {run_dir} (progress.csv, "
        "learning_curve.png, summary.json, checkpoint/)",
        flush=True,
    )
    return 0


def tune_command(args: argparse.Namespace) -> int:
    """`tune SEARCH.yaml`: Ray Tune over the file's search spaces; prints the best trial."""
    from rllib_hatrpo.app import tuning
    from rllib_hatrpo.operations.cluster_check import check_cluster_resources

    experiment, config, run_dir = _start_run(args, "search directory")
    if experiment.wandb is not None:
        from rllib_hatrpo.app.wandb_logging import offline_unless_credentials

        if offline_unless_credentials():
            where = os.environ.get("WANDB_DIR", f"{run_dir}/<trial>")
            print(f"wandb: offline runs in {where}/wandb (upload with `wandb sync`)")
    with ray_session():
        # Each trial reserves its main process too; a trial that can never start would keep
        # Tune waiting forever (Tune only warns), so stop here naming the resource.
        check_cluster_resources(config, include_main_process=True)
        results = tuning.run_search(experiment, run_dir)
    try:
        best = tuning.best_trial(experiment, results)
    except RuntimeError as err:
        print(f"no best trial: {err}", file=sys.stderr)
        return 1
    tuning.write_best(run_dir, best)
    print("best trial:\n" + json.dumps(best, indent=2, default=str), flush=True)
    return 1 if results.errors else 0


def evaluate_command(args: argparse.Namespace) -> int:
    """`evaluate CHECKPOINT`: `rllib_hatrpo.app.evaluation.evaluate_checkpoint`, printed as JSON."""
    from rllib_hatrpo.app.evaluation import evaluate_checkpoint

    checkpoint = find_checkpoint(args.checkpoint)
    video = None if args.video is None else str(args.video)
    result = evaluate_checkpoint(str(checkpoint), episodes=args.episodes, video_path=video)
    print(json.dumps(result, indent=2, default=str), flush=True)
    if args.wandb:
        _log_evaluation(checkpoint, result, args.video)
    return 0


def _log_evaluation(checkpoint: Path, result: Any, video: Path | None) -> None:
    """Logs an evaluation into the wandb run of the checkpoint's run directory, with the
    run's `wandb` settings."""
    from rllib_hatrpo.app import wandb_logging

    run_dir = checkpoint.parent
    experiment_file = run_dir / EXPERIMENT_YAML
    settings = (load_experiment(experiment_file).wandb or {}) if experiment_file.exists() else {}
    wandb_logging.log_evaluation(settings, run_dir, dict(result), video)


if __name__ == "__main__":
    sys.exit(main())
