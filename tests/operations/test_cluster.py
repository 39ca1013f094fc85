"""Running on a Ray cluster: the configs in cluster/, the resource check, and a real cluster.

The static tests parse the cluster-launcher configs (with Ray's own schema), the KubeRay
manifests and the runtime environment; check that what they name exists (experiment files, the
`rllib-hatrpo` command); and that the resources the documented jobs ask for fit in the cluster
at its largest. `check_cluster_resources` is tested as a pure function.

The live tests start a two-node Ray cluster on this machine with cluster/local_two_node.sh (a
head node and a node offering the custom resource `sampler`), submit jobs with
`ray job submit`, and stop the cluster at the end, also when a test fails. Everything Ray runs
in subprocesses with its own temp dirs, ports and auth token: this process never calls
`ray.init()`, so the `ray_session` fixture of other tests is not disturbed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_cluster import (
    CLUSTER,
    REPO,
    SAMPLER,
    SCRIPT,
    cli_command,
    job_logs,
    job_record,
    ray_cli,
    submit,
)

from rllib_hatrpo import HATRPOConfig
from rllib_hatrpo.app import cli
from rllib_hatrpo.operations.cluster_check import (
    _launcher_capacity,
    actor_demands,
    check_cluster_resources,
)

LAUNCHER_CONFIGS = ["aws.yaml", "gcp.yaml"]


# ---------------------------------------------------------------------------------------------
# Static checks of cluster/


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d.get("kind") == kind]
    return doc


def _train_args(argv: list[str]) -> Any:
    """`rllib-hatrpo train ...` parsed by the CLI itself; the config path made absolute."""
    assert argv[:2] == ["rllib-hatrpo", "train"], argv
    args = cli._parser().parse_args(argv[1:])
    args.config = REPO / args.config
    return args


def _train_config(argv: list[str]) -> Any:
    """The algorithm config a `rllib-hatrpo train ...` command line would build."""
    args = _train_args(argv)
    assert args.config.exists(), f"{args.config} (named in {shlex.join(argv)}) does not exist"
    return cli._load(args).build_config()


def _documented_job(path: Path) -> list[str]:
    """The `rllib-hatrpo train ...` part of the `ray job submit` command in a file's comments."""
    lines = [line.lstrip("#").strip() for line in path.read_text().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("ray job submit"))
    command = []
    for line in lines[start:]:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    argv = shlex.split(" ".join(command))
    return argv[argv.index("--") + 1 :]


def _start_params_resources(params: dict[str, Any]) -> dict[str, float]:
    """KubeRay's rayStartParams: `resources: '"{\\"sampler\\": 4}"'` plus num-cpus/num-gpus."""
    resources: dict[str, float] = {}
    if "resources" in params:
        text = params["resources"]
        assert text.startswith('"') and text.endswith('"'), text  # quoted for ray start's shell
        resources.update(json.loads(text[1:-1].replace('\\"', '"')))
    for key, name in (("num-cpus", "CPU"), ("num-gpus", "GPU")):
        if key in params:
            resources[name] = float(params[key])
    return resources


def _kuberay_nodes(raycluster: dict[str, Any]) -> list[dict[str, float]]:
    """Each node of the RayCluster at its largest: the head and maxReplicas of each group."""
    spec = raycluster["spec"]
    nodes = [_start_params_resources(spec["headGroupSpec"]["rayStartParams"])]
    for group in spec["workerGroupSpecs"]:
        node = _start_params_resources(group["rayStartParams"])
        nodes += [node] * group["maxReplicas"]
    return nodes


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_rays_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / name).read_text())
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    samplers = [t for t in types.values() if SAMPLER in (t.get("resources") or {})]
    assert SAMPLER not in (head.get("resources") or {})  # no EnvRunner on the learner's node
    assert samplers and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in samplers)
    setup = " ; ".join(config["setup_commands"])
    assert setup.index("pip install torch==2.13.0") < setup.index("pip install -e")


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_fits_its_documented_job(name):
    path = CLUSTER / name
    argv = _documented_job(path)
    config = _train_config(argv)
    capacity = _launcher_capacity(path)
    per_runner = config.custom_resources_per_env_runner[SAMPLER]
    assert config.num_env_runners * per_runner <= capacity.total(SAMPLER)
    check_cluster_resources(config, [k.resources for k in capacity.kinds for _ in range(k.count)])
    # The head node alone (had the sampler group no nodes): a message, not a hang.
    head_type = yaml.safe_load(path.read_text())["head_node_type"]
    (head,) = [kind.resources for kind in capacity.kinds if kind.name == head_type]
    with pytest.raises(ValueError, match="sampler: each EnvRunner asks for 1 but no node"):
        check_cluster_resources(config, [head])


def test_kuberay_manifests_parse_and_the_job_fits_the_cluster():
    cluster_docs = _load_all(CLUSTER / "kuberay" / "raycluster.yaml")
    raycluster = _one(cluster_docs, "RayCluster")
    rayjob = _one(_load_all(CLUSTER / "kuberay" / "rayjob.yaml"), "RayJob")
    assert rayjob["spec"]["clusterSelector"]["ray.io/cluster"] == raycluster["metadata"]["name"]
    assert raycluster["spec"]["enableInTreeAutoscaling"] is True
    head, *workers = _kuberay_nodes(raycluster)
    assert SAMPLER not in head and head["CPU"] == 0
    assert workers and all(node[SAMPLER] == 4 and node["CPU"] == 4 for node in workers)

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    config = _train_config(argv)
    assert config.custom_resources_per_env_runner == {SAMPLER: 1}
    asked = config.num_env_runners * config.custom_resources_per_env_runner[SAMPLER]
    assert asked <= sum(node[SAMPLER] for node in workers)
    check_cluster_resources(config, [head, *workers])
    # One more EnvRunner than the worker group holds at maxReplicas: named, not a hang.
    config.env_runners(num_env_runners=len(workers) * 4 + 1)
    with pytest.raises(ValueError, match=r"sampler: the config asks for 17 \(17 EnvRunners x 1\)"):
        check_cluster_resources(config, [head, *workers])


def test_runtime_envs_are_valid_and_agree():
    from ray.runtime_env import RuntimeEnv

    local = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    rayjob = _one(_load_all(CLUSTER / "kuberay" / "rayjob.yaml"), "RayJob")
    in_cluster = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    for env in (local, in_cluster):
        RuntimeEnv(**env)  # Ray's own validation of every field
    packages = local["pip"]["packages"]
    assert packages[0] == "torch==2.13.0"
    assert any(re.match(r"rllib-hatrpo\b", p) for p in packages)
    assert in_cluster["pip"] == local["pip"]
    assert in_cluster["working_dir"].startswith("https://") and in_cluster["working_dir"].endswith(
        ".zip"
    )


def test_rllib_hatrpo_is_a_console_script():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["rllib-hatrpo"] == "rllib_hatrpo.app.cli:main"


def test_local_script_names_existing_files():
    text = SCRIPT.read_text()
    assert os.access(SCRIPT, os.X_OK)
    default = re.search(r'config="\$\{1:-([^}]+)\}"', text).group(1)
    assert (REPO / default).exists()
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


# ---------------------------------------------------------------------------------------------
# check_cluster_resources as a pure function


def _config(**env_runners: Any) -> HATRPOConfig:
    return HATRPOConfig().env_runners(**env_runners)


def test_resource_check_passes_when_the_config_fits():
    config = _config(num_env_runners=4, custom_resources_per_env_runner={SAMPLER: 1})
    check_cluster_resources(config, {"CPU": 8, SAMPLER: 4})
    check_cluster_resources(config, [{"CPU": 2, "head": 1}, {"CPU": 4, SAMPLER: 4}])
    check_cluster_resources(_config(num_env_runners=0), {})  # nothing remote: nothing to check


def test_resource_check_names_a_resource_the_cluster_has_too_little_of():
    config = _config(num_env_runners=3, custom_resources_per_env_runner={SAMPLER: 1})
    with pytest.raises(ValueError) as err:
        check_cluster_resources(config, [{"CPU": 1, "head": 1}, {"CPU": 1, SAMPLER: 1}])
    message = str(err.value)
    assert message.startswith(
        "sampler: the config asks for 3 (3 EnvRunners x 1) but the cluster has 1"
    )
    assert "CPU: the config asks for 3 (3 EnvRunners x 1) but the cluster has 2" in message


def test_resource_check_names_a_resource_no_node_has():
    config = _config(num_env_runners=1, custom_resources_per_env_runner={"samplr": 1})
    with pytest.raises(ValueError, match="samplr: each EnvRunner asks for 1 but no node"):
        check_cluster_resources(config, {"CPU": 8, SAMPLER: 8})


def test_resource_check_needs_one_node_with_all_of_an_actors_resources():
    config = _config(
        num_env_runners=1, num_cpus_per_env_runner=2, custom_resources_per_env_runner={SAMPLER: 1}
    )
    nodes = [{"CPU": 1, SAMPLER: 1}, {"CPU": 4}]  # enough in total, never on one node
    with pytest.raises(ValueError, match=r"\{CPU: 2, sampler: 1\}: each EnvRunner asks for these"):
        check_cluster_resources(config, nodes)


def test_resource_check_counts_learners_evaluation_runners_and_tunes_main_process():
    config = _config(num_env_runners=1).learners(num_learners=2, num_gpus_per_learner=1)
    assert [d.what for d in actor_demands(config)] == ["EnvRunner", "Learner", "Learner"]
    with pytest.raises(ValueError, match=r"GPU: the config asks for 2 \(2 Learners x 1\)"):
        check_cluster_resources(config, {"CPU": 8, "GPU": 1})

    config = _config(num_env_runners=1, custom_resources_per_env_runner={SAMPLER: 1})
    config.evaluation(evaluation_interval=5, evaluation_num_env_runners=2)
    demands = actor_demands(config)
    assert [d.what for d in demands].count("evaluation EnvRunner") == 2
    assert all(d.resources.get(SAMPLER) == 1 for d in demands)
    with pytest.raises(ValueError, match=r"sampler: the config asks for 3 \(1 EnvRunner x 1 \+ "):
        check_cluster_resources(config, {"CPU": 8, SAMPLER: 2})

    config = _config(num_env_runners=1)  # a Tune trial reserves the main process too
    check_cluster_resources(config, {"CPU": 1})
    with pytest.raises(ValueError, match="CPU: the config asks for 2"):
        check_cluster_resources(config, {"CPU": 1}, include_main_process=True)


def test_resource_check_uses_the_launcher_configs_maximum_size(tmp_path, monkeypatch):
    import ray

    from rllib_hatrpo.operations import cluster_check

    path = tmp_path / "ray_bootstrap_config.yaml"  # what `ray up` leaves on the head node
    path.write_text(
        yaml.safe_dump(
            {
                "max_workers": 3,
                "head_node_type": "head",
                "available_node_types": {
                    "head": {"resources": {"head": 1}},  # CPU detected at start: unknown
                    "samplers": {"resources": {"CPU": 4, SAMPLER: 4}, "max_workers": 5},
                },
            }
        )
    )
    monkeypatch.setattr(cluster_check, "BOOTSTRAP_CONFIG", str(path))
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # read only the file
    config = _config(num_env_runners=12, custom_resources_per_env_runner={SAMPLER: 1})
    check_cluster_resources(config)  # 3 sampler nodes (the global max_workers) x 4
    config.env_runners(num_env_runners=13)
    with pytest.raises(ValueError, match=r"sampler: .* asks for 13 .* has 12 \(at the maximum"):
        check_cluster_resources(config)


def test_resource_check_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("RLLIB_HATRPO_RESOURCE_CHECK", "0")
    config = _config(num_env_runners=3, custom_resources_per_env_runner={SAMPLER: 1})
    check_cluster_resources(config)  # returns before looking for a cluster


# ---------------------------------------------------------------------------------------------
# A two-node cluster on this machine


TINY_EXPERIMENT = {
    "algorithm": "HATRPO",
    "env": "mamujoco",
    "env_config": {"scenario": "HalfCheetah", "agent_conf": "2x3"},
    "env_runners": {"num_env_runners": 1, "num_envs_per_env_runner": 2},
    "training": {"train_batch_size_per_learner": 400, "critic_epochs": 1, "hidden_sizes": [32]},
    "stop": {"training_iteration": 2},
    "seed": 0,
    "checkpoint_every": 1,
}


@pytest.mark.cluster
@pytest.mark.slow
def test_training_job_places_its_envrunner_on_the_sampler_node(local_cluster):
    experiment = local_cluster.state / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    run_dir = local_cluster.state / "run"
    done, wall_s = submit(
        local_cluster,
        "train-tiny",
        [
            *cli_command(),
            "train",
            str(experiment),
            "--set",
            "env_runners.custom_resources_per_env_runner={sampler: 1}",
            "--run-dir",
            str(run_dir),
        ],
        working_dir=REPO,  # as a user submits: the checkout, without what .gitignore lists
    )
    print(f"\ntraining job: {wall_s:.1f} s wall time")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    job = job_record(local_cluster, "train-tiny")
    assert job["status"] == "SUCCEEDED"

    actors = json.loads(
        ray_cli(
            local_cluster,
            "list",
            "actors",
            "--address",
            local_cluster.dashboard,
            "--detail",
            "--format",
            "json",
            "--limit",
            "10000",
        ).stdout
    )
    runners = [a for a in actors if "EnvRunner" in a["class_name"] and a["job_id"] == job["job_id"]]
    print(
        "EnvRunners:",
        [(a["class_name"], a["node_id"][:8], a["required_resources"]) for a in runners],
    )
    assert runners
    for runner in runners:
        assert runner["node_id"] == local_cluster.sampler_node
        assert runner["required_resources"] == {"CPU": 1.0, SAMPLER: 1.0}

    assert (run_dir / "checkpoint" / "rllib_checkpoint.json").exists()
    rows = (run_dir / "progress.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 iterations


@pytest.mark.cluster
@pytest.mark.slow
def test_missing_experiment_file_fails_the_job_naming_the_path(local_cluster):
    done, wall_s = submit(
        local_cluster, "missing-config", [*cli_command(), "train", "does/not/exist.yaml"]
    )
    print(f"\nmissing-config job: {wall_s:.1f} s wall time")
    assert done.returncode != 0
    assert job_record(local_cluster, "missing-config")["status"] == "FAILED"
    assert "does/not/exist.yaml" in job_logs(local_cluster, "missing-config")


CHECK_IN_CLUSTER = textwrap.dedent(
    """
    import sys
    import ray
    from rllib_hatrpo.operations.cluster_check import check_cluster_resources
    from rllib_hatrpo.app.experiment import load_experiment

    ray.init()
    def config(runners):
        return load_experiment(sys.argv[1], {
            "env_runners.num_env_runners": runners,
            "env_runners.custom_resources_per_env_runner": {"sampler": 1},
        }).build_config()
    check_cluster_resources(config(1))
    print("1 EnvRunner fits", flush=True)
    check_cluster_resources(config(3))
    """
)


@pytest.mark.cluster
@pytest.mark.slow
def test_resource_check_in_the_cluster_fails_fast_naming_the_resource(local_cluster):
    experiment = local_cluster.state / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    done, wall_s = submit(
        local_cluster,
        "too-many-samplers",
        [sys.executable, "-c", CHECK_IN_CLUSTER, str(experiment)],
    )
    print(f"\nresource-check job: {wall_s:.1f} s wall time")
    logs = job_logs(local_cluster, "too-many-samplers")
    assert done.returncode != 0
    assert job_record(local_cluster, "too-many-samplers")["status"] == "FAILED"
    assert "1 EnvRunner fits" in logs
    assert "sampler: the config asks for 3 (3 EnvRunners x 1) but the cluster has 1" in logs
    assert "2 nodes, no autoscaler" in logs
