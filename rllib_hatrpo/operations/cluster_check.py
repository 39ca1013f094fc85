"""Fail fast when a config asks for Ray resources that the cluster can never provide.

RLlib starts each EnvRunner (and each remote Learner) as a Ray actor with the resources of the
config, e.g. `env_runners(custom_resources_per_env_runner={"sampler": 1})`. Ray keeps an actor
that no node can host pending forever (it only logs "infeasible" warnings), so a misspelt
resource name, or more EnvRunners than the cluster has `sampler` slots, makes `build_algo()`
hang. :func:`check_cluster_resources` compares what the config asks for with what the cluster
has -- on an autoscaling cluster, with what it can have at its maximum size -- and raises a
`ResourceError` (a ValueError) naming the resource:

    sampler: the config asks for 3 (3 EnvRunners x 1) but the cluster has 1 (2 nodes, no
    autoscaler) ...

`HAAlgorithm.setup` calls it (through :func:`check_before_actors`, which connects to Ray first
the way RLlib would) before creating any actor, and `rllib-hatrpo tune` before starting trials;
during training, :func:`check_one_env_runner_fits` tells a lost sampler node (wait for Ray to
restart the EnvRunners elsewhere) from one the cluster can no longer host (stop with a message).
Set `RLLIB_HATRPO_RESOURCE_CHECK=0` to skip both.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIP_ENV_VAR = "RLLIB_HATRPO_RESOURCE_CHECK"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
"""Where the Ray cluster launcher (`ray up`) puts the cluster config on the head node."""

_EPS = 1e-9
_OFF = ("0", "false", "no", "off")
_NODE_RESOURCE = re.compile(r"^node:|^accelerator_type:")
_READONLY_NODE_TYPE = re.compile(r"^node_[0-9a-f]+$")


class ResourceError(ValueError):
    """A config asks for resources the Ray cluster can never provide (message names them)."""


@dataclass(frozen=True)
class Demand:
    """One Ray actor the algorithm creates and the resources it reserves."""

    what: str
    resources: dict[str, float]


@dataclass(frozen=True)
class NodeKind:
    """Nodes of one shape: their resources (None = detected at start, unknown here) and how
    many the cluster can have (None = no limit)."""

    name: str
    resources: dict[str, float | None]
    count: int | None = 1


@dataclass(frozen=True)
class Capacity:
    """What a cluster can ever offer, and how that was found out (for messages)."""

    kinds: list[NodeKind]
    source: str

    def total(self, resource: str) -> float:
        total = 0.0
        for kind in self.kinds:
            if kind.count == 0:
                continue
            amount = kind.resources.get(resource, 0.0)
            if amount is None or (kind.count is None and amount > 0):
                return math.inf
            total += amount * kind.count
        return total

    def fits_one_node(self, resources: Mapping[str, float]) -> bool:
        return any(
            kind.count != 0
            and all(
                kind.resources.get(name, 0.0) is None
                or kind.resources.get(name, 0.0) + _EPS >= amount
                for name, amount in resources.items()
            )
            for kind in self.kinds
        )

    def largest(self, resource: str) -> float | None:
        amounts = [k.resources.get(resource, 0.0) for k in self.kinds if k.count != 0]
        return None if None in amounts else max(amounts, default=0.0)


def actor_demands(config: Any, *, include_main_process: bool = False) -> list[Demand]:
    """The Ray actors the config's algorithm creates, as RLlib reserves them: the bundles of
    `Algorithm.default_resource_request(config)` (what Ray Tune reserves for a trial).

    Its bundles are, in order, the algorithm's own process, the training EnvRunners, the
    evaluation EnvRunners and the remote Learners. The first is reserved only by Ray Tune
    (`build_algo()` in a driver reserves nothing for itself), so it counts only with
    `include_main_process`.
    """
    bundles = config.algo_class.default_resource_request(config.to_dict()).bundles
    eval_config = config.get_evaluation_config_object()
    evaluating = config.evaluation_interval or config.evaluation_num_env_runners > 0
    whats = (
        ["the algorithm's main process"]
        + ["EnvRunner"] * config.num_env_runners
        + ["evaluation EnvRunner"] * (eval_config.num_env_runners if evaluating else 0)
    )
    whats += ["Learner"] * (len(bundles) - len(whats))
    demands = [Demand(what, _nonzero(bundle)) for what, bundle in zip(whats, bundles, strict=True)]
    return [d for d in demands[0 if include_main_process else 1 :] if d.resources]


def check_cluster_resources(
    config: Any,
    cluster: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
    *,
    include_main_process: bool = False,
) -> None:
    """Raises ResourceError if the config asks for resources the cluster can never provide.

    Two conditions, each necessary for Ray to ever place all of the config's actors: every
    actor's resources fit on one node (an EnvRunner asking for {"CPU": 1, "sampler": 1} needs a
    node that has both), and the actors' total of each resource fits in the cluster's total.

    Args:
        config: An `AlgorithmConfig` (validated or not).
        cluster: What to compare with: the cluster's total resources (a mapping, e.g. a fake
            `{"CPU": 8, "sampler": 4}` or `ray.cluster_resources()`), or one mapping per node.
            None (default): the connected Ray cluster (`ray.init()` first). A cluster started
            by `ray up` counts at the maximum size of its autoscaling config; on an
            autoscaling cluster whose limits Ray does not expose (e.g. KubeRay's autoscaler)
            the check is skipped, as it is with the environment variable
            `RLLIB_HATRPO_RESOURCE_CHECK=0`.
        include_main_process: Count the algorithm's own process too (Ray Tune trials reserve
            it; use True before `Tuner.fit()`).

    Raises:
        ResourceError: (a ValueError) naming each resource that can never be provided, what
            the config asks for and what the cluster has.
    """
    _check_demands(actor_demands(config, include_main_process=include_main_process), cluster)


def _check_demands(
    demands: list[Demand], cluster: Mapping[str, float] | Sequence[Mapping[str, float]] | None
) -> None:
    """`check_cluster_resources` of demands already computed."""
    if not demands:
        return
    capacity = _capacity(cluster)
    if capacity is None:
        return
    problems = _problems(demands, capacity)
    if problems:
        raise ResourceError(
            "\n".join(problems)
            + "\nRay would wait forever for these actors. Lower the config's request "
            "(env_runners: num_env_runners, num_cpus_per_env_runner, "
            "custom_resources_per_env_runner; learners: ...) or give the cluster nodes with "
            f"these resources. (Skip this check with {SKIP_ENV_VAR}=0.)"
        )


def check_before_actors(config: Any) -> None:
    """`check_cluster_resources(config)` before an algorithm creates its Ray actors.

    If the config asks for actors (remote EnvRunners or Learners) and Ray is not connected
    yet, connects the way RLlib's first Ray call would (Ray's automatic `ray.init()`, which
    honours `RAY_ADDRESS`; nothing if `RAY_ENABLE_AUTO_CONNECT=0`). A config without actors
    is left alone: it never waits for a node.
    """
    if _skipped():
        return
    demands = actor_demands(config)  # RLlib's resource request: computed once here
    if not demands:
        return
    import ray

    if not ray.is_initialized() and os.environ.get("RAY_ENABLE_AUTO_CONNECT", "1") != "0":
        ray.init()  # as RLlib's first Ray call would: honours RAY_ADDRESS
    if ray.is_initialized():
        _check_demands(demands, None)


def env_runner_demand(config: Any) -> Demand | None:
    """What one training EnvRunner of the config reserves (None: no remote EnvRunners)."""
    return next((d for d in actor_demands(config) if d.what == "EnvRunner"), None)


def check_one_env_runner_fits(demand: Demand | None) -> None:
    """Raises ResourceError unless a node of the connected cluster can host one EnvRunner
    reserving `demand` (`env_runner_demand(config)`, computed once by the caller: it builds
    RLlib's resource request).

    While no EnvRunner is healthy, this tells "Ray is restarting them" (wait) from "no node
    left has what an EnvRunner asks for, e.g. the only `sampler` node is gone" (Ray would keep
    the restarted actors pending forever). Autoscaling clusters count at their maximum size.
    """
    capacity = _capacity(None) if demand is not None else None
    if capacity is None:
        return
    problems = [p for p in _problems([demand], capacity) if "each EnvRunner" in p]
    if problems:
        raise ResourceError("\n".join(problems))


def _skipped() -> bool:
    return os.environ.get(SKIP_ENV_VAR, "1").strip().lower() in _OFF


def _capacity(cluster: Mapping[str, float] | Sequence[Mapping[str, float]] | None) -> Any:
    """`cluster` as a Capacity; None: the connected cluster's (None if unknown or skipped)."""
    if cluster is None:
        return None if _skipped() else cluster_capacity()
    if isinstance(cluster, Mapping):
        return Capacity([NodeKind("cluster", dict(cluster))], "the given resources")
    kinds = [NodeKind(f"node {i}", dict(node)) for i, node in enumerate(cluster)]
    return Capacity(kinds, f"{len(kinds)} given nodes")


def cluster_capacity() -> Capacity | None:
    """What the connected Ray cluster can ever offer; None where that cannot be known.

    In order: the cluster launcher's config on the head node (node types x max_workers), the
    node groups an autoscaler reported to the GCS, None if another autoscaler runs (its limits
    are unknown), else the nodes alive now (a cluster of fixed size: `ray start` by hand,
    KubeRay without autoscaling).
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError("check_cluster_resources: connect to Ray first (ray.init())")
    bootstrap = Path(BOOTSTRAP_CONFIG).expanduser()
    if bootstrap.exists():
        return _launcher_capacity(bootstrap)
    reported = _reported_capacity()
    if reported is not None:
        return reported
    if _other_autoscaler():
        return None
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    kinds = [
        NodeKind(node.get("NodeManagerAddress", f"node {i}"), dict(node["Resources"]))
        for i, node in enumerate(nodes)
    ]
    return Capacity(kinds, f"{len(kinds)} node{'s' * (len(kinds) != 1)}, no autoscaler")


def _problems(demands: list[Demand], capacity: Capacity) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, tuple[tuple[str, float], ...]]] = set()
    for demand in demands:
        key = (demand.what, tuple(sorted(demand.resources.items())))
        if key in seen or capacity.fits_one_node(demand.resources):
            continue
        seen.add(key)
        largest = {name: capacity.largest(name) for name in demand.resources}
        short = [
            (name, amount, largest[name])
            for name, amount in demand.resources.items()
            if largest[name] is not None and largest[name] + _EPS < amount
        ]
        for name, amount, most in short:
            has = f"more than {_num(most)}" if most > 0 else "any"
            problems.append(
                f"{name}: each {demand.what} asks for {_num(amount)} but no node of the cluster "
                f"has {has} ({capacity.source})"
            )
        if not short:
            problems.append(
                f"{_show(demand.resources)}: each {demand.what} asks for these together but no "
                f"node of the cluster has all of them ({capacity.source})"
            )
    # Custom resources first: the likelier culprit (a misspelt name, too few sampler nodes).
    names = sorted(
        {name for demand in demands for name in demand.resources},
        key=lambda name: (name in ("CPU", "GPU"), name),
    )
    for name in names:
        asked = sum(demand.resources.get(name, 0.0) for demand in demands)
        total = capacity.total(name)
        if asked > total + _EPS:
            problems.append(
                f"{name}: the config asks for {_num(asked)} ({_breakdown(demands, name)}) but the "
                f"cluster has {_num(total)} ({capacity.source})"
            )
    return problems


def _breakdown(demands: list[Demand], name: str) -> str:
    counts: dict[tuple[str, float], int] = {}
    for demand in demands:
        if name in demand.resources:
            key = (demand.what, demand.resources[name])
            counts[key] = counts.get(key, 0) + 1
    return " + ".join(
        f"{count} {what}{'s' * (count != 1)} x {_num(amount)}"
        for (what, amount), count in counts.items()
    )


def _launcher_capacity(path: Path) -> Capacity:
    """Node types of a `ray up` config: the head once, each worker type up to max_workers."""
    import yaml

    config = yaml.safe_load(path.read_text()) or {}
    types: dict[str, Any] = config.get("available_node_types") or {}
    head_type = config.get("head_node_type")
    global_max = config.get("max_workers")
    kinds = []
    for name, spec in types.items():
        spec = spec or {}
        resources: dict[str, float | None] = dict(spec.get("resources") or {})
        for auto in ("CPU", "GPU", "memory"):
            resources.setdefault(auto, None)  # detected from the instance type at start
        if name == head_type:  # the head, plus workers of its type if it allows any
            count = 1 + int(spec.get("max_workers") or 0)
        else:
            count = spec.get("max_workers", global_max)
            if count is not None and global_max is not None:
                count = min(count, global_max)
        kinds.append(NodeKind(name, resources, count))
    return Capacity(kinds, f"at the maximum size of {path}")


def _reported_capacity() -> Capacity | None:
    """Node groups with their max counts, as an autoscaler (v2) reports them to the GCS.

    Private Ray module: no public API of Ray 2.60 reads the autoscaler's node-group limits;
    any failure counts as "not reported".
    """
    try:
        import ray._private.state as state

        config = state.state.get_cluster_config()
    except Exception:
        return None
    if config is None or not config.node_group_configs:
        return None
    kinds = [
        NodeKind(
            group.name,
            {key: float(value) for key, value in group.resources.items()},
            None if group.max_count < 0 else int(group.max_count),
        )
        for group in config.node_group_configs
    ]
    return Capacity(kinds, "at the maximum size the autoscaler reports")


def _other_autoscaler() -> bool:
    """Whether an autoscaler that may add nodes runs (its limits unknown to us).

    Ray's monitor publishes its status in the GCS; with no autoscaling config (nodes started by
    hand) it names each node type after a node id ("node_<hex>"), a real autoscaler after its
    configured node types. Autoscaler v2 is always taken to scale. Private Ray modules: no
    public API of Ray 2.60 tells whether an autoscaler runs; any failure counts as "none".
    """
    try:
        from ray._private import ray_constants
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        from ray.experimental.internal_kv import _internal_kv_get

        if is_autoscaler_v2(fetch_from_server=True):
            return True
        status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    except Exception:
        return False
    if not status:
        return False
    try:
        report = json.loads(status).get("autoscaler_report") or {}
    except ValueError:
        return False
    names = set((report.get("node_type_mapping") or {}).values()) | set(
        report.get("active_nodes") or {}
    )
    return any(not _READONLY_NODE_TYPE.match(str(name)) for name in names)


def _nonzero(resources: Mapping[str, float]) -> dict[str, float]:
    return {
        name: float(amount)
        for name, amount in resources.items()
        if amount and not _NODE_RESOURCE.match(name)
    }


def _num(value: float) -> str:
    return "unlimited" if math.isinf(value) else f"{value:g}"


def _show(resources: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {_num(v)}" for k, v in sorted(resources.items())) + "}"
