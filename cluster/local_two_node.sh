#!/usr/bin/env bash
# A two-node Ray cluster on this machine, shaped like the cloud clusters in cluster/*.yaml:
# a head node (1 CPU, custom resource `head`) that runs the job driver and the learner, and a
# second node (1 CPU, custom resource `sampler`) where the EnvRunners are placed.
#
#   cluster/local_two_node.sh [CONFIG.yaml [rllib-hatrpo train options ...]]
#       start the cluster, submit `rllib-hatrpo train CONFIG.yaml ...` with `ray job submit`
#       (EnvRunners ask for {"sampler": 1}), print where the EnvRunners ran, stop the cluster.
#       Default: tune_configs/hatrpo_halfcheetah_2x3_quick.yaml --stop-timesteps 8000
#   cluster/local_two_node.sh up      start the cluster and leave it running; prints the
#                                     addresses and writes them to $LOCAL_CLUSTER_DIR/env
#   cluster/local_two_node.sh down    stop the cluster of $LOCAL_CLUSTER_DIR
#   cluster/local_two_node.sh sampler-down   kill the sampler node (all its processes at once,
#                                     as when a machine is lost); the head node stays
#   cluster/local_two_node.sh sampler-up     start a new sampler node in the cluster
#
# Every port is a free one picked at start, every address a loopback one (nodes 127.0.0.2 and
# 127.0.0.3, dashboard and job server 127.0.0.1); the cluster has its own temp dirs and auth
# token, so it neither finds nor disturbs any other Ray on the machine (a plain `ray.init()`
# elsewhere does not connect to it). `down` ends only the processes this script started (their
# process groups), never `ray stop`.
#
# Environment: LOCAL_CLUSTER_DIR (state dir; default a new /tmp/rhc.XXXXXX), RAY (the `ray`
# command; default: .venv/bin/ray of this checkout if no virtualenv is active, else `ray`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${VIRTUAL_ENV:-}" && -x "$REPO/.venv/bin/ray" ]]; then
    PATH="$REPO/.venv/bin:$PATH"  # the nodes' workers run the interpreter of `ray start`
fi
RAY="${RAY:-ray}"
PYTHON="$(dirname "$(command -v "$RAY")")/python"
[[ -x "$PYTHON" ]] || PYTHON=python3
START_TIMEOUT_S="${START_TIMEOUT_S:-90}"
HEAD_IP="${HEAD_IP:-127.0.0.2}"        # the two nodes' addresses (loopback)
SAMPLER_IP="${SAMPLER_IP:-127.0.0.3}"

log() { printf '[local_two_node %s] %s\n' "$(date +%T)" "$*" >&2; }

free_ports() {  # N distinct free TCP ports on 127.0.0.1
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_started() {  # LOG PID: until `ray start --block` logs that the node runs
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until grep -q "Ray runtime started" "$1" 2>/dev/null; do
        if ! kill -0 "$2" 2>/dev/null; then
            log "ray start failed:"; tail -n 30 "$1" >&2; return 1
        fi
        if ((SECONDS > deadline)); then
            log "no node after ${START_TIMEOUT_S}s:"; tail -n 30 "$1" >&2; return 1
        fi
        sleep 0.2
    done
}

wait_gcs() {  # HOST PORT LOG PID: until the head's GCS accepts connections (the second node
    local deadline=$((SECONDS + START_TIMEOUT_S))  # can join while the head starts the rest)
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        if ! kill -0 "$4" 2>/dev/null; then
            log "ray start failed:"; tail -n 30 "$3" >&2; return 1
        fi
        if ((SECONDS > deadline)); then
            log "no GCS after ${START_TIMEOUT_S}s:"; tail -n 30 "$3" >&2; return 1
        fi
        sleep 0.2
    done
}

COMMON_START=(--num-cpus=1 --min-worker-port=0 --max-worker-port=0
    --runtime-env-agent-port=0 --disable-usage-stats --block)

start_sampler() {  # GCS_ADDRESS: a node offering `sampler`, joining the cluster (not waited for)
    local agent grpc metrics
    read -r agent grpc metrics < <(free_ports 3)
    [[ -n "$metrics" ]] || return 1
    # A temp dir of its own, as on a machine of its own: nodes sharing one would share the
    # unpacked working_dir of a job, and the second node's unpacking replaces the directory
    # under the driver's feet (os.getcwd() then fails in the driver).
    setsid "$RAY" start --address="$1" --node-ip-address="$SAMPLER_IP" \
        --resources='{"sampler": 1}' \
        --dashboard-agent-listen-port="$agent" --dashboard-agent-grpc-port="$grpc" \
        --metrics-export-port="$metrics" --temp-dir="$DIR/sampler" "${COMMON_START[@]}" \
        >"$DIR/sampler.log" 2>&1 &
    echo $! >"$DIR/sampler.pgid"
    disown
}

node_ids() {  # DASHBOARD [OLD_SAMPLER_ID]: "HEAD_ID SAMPLER_ID" of alive nodes, once both are
    local ids deadline=$((SECONDS + START_TIMEOUT_S))  # registered (a sampler node other
    while :; do                                         # than OLD_SAMPLER_ID)
        ids="$("$RAY" list nodes --address "$1" --format json 2>/dev/null | "$PYTHON" -c '
import json, sys
nodes = [n for n in json.load(sys.stdin) if n["state"] == "ALIVE"]
head = [n["node_id"] for n in nodes if n["is_head_node"]]
sampler = [n["node_id"] for n in nodes
           if n["resources_total"].get("sampler", 0) > 0 and n["node_id"] != sys.argv[1]]
print(head[0], sampler[0])' "${2:-}" 2>/dev/null || true)"
        if [[ -n "$ids" ]]; then echo "$ids"; return 0; fi
        if ((SECONDS > deadline)); then log "the nodes did not register"; return 1; fi
        sleep 0.5
    done
}

up() {
    DIR="${LOCAL_CLUSTER_DIR:-$(mktemp -d /tmp/rhc.XXXXXX)}"
    mkdir -p "$DIR/tmp"
    local t0=$SECONDS
    local gcs dash client agent_h grpc_h metrics_h
    read -r gcs dash client agent_h grpc_h metrics_h < <(free_ports 6)
    [[ -n "$metrics_h" ]] || return 1
    export RAY_TMPDIR="$DIR/tmp" RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0
    export RAY_AUTH_TOKEN="${RAY_AUTH_TOKEN:-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')}"
    unset RAY_ADDRESS

    # Node addresses on the loopback network: Ray replaces 127.0.0.1 itself by the machine's
    # routable IP, but not other 127.x addresses. (Ray's core gRPC servers still listen on all
    # interfaces: it has no bind-address option; every address used here is a loopback one.)
    setsid "$RAY" start --head --node-ip-address="$HEAD_IP" --port="$gcs" \
        --resources='{"head": 1}' \
        --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$dash" \
        --ray-client-server-port="$client" --dashboard-agent-listen-port="$agent_h" \
        --dashboard-agent-grpc-port="$grpc_h" --metrics-export-port="$metrics_h" \
        --temp-dir="$DIR/head" "${COMMON_START[@]}" >"$DIR/head.log" 2>&1 &
    echo $! >"$DIR/head.pgid"
    disown  # `down` ends it; no "Killed" notice from this shell
    wait_gcs "$HEAD_IP" "$gcs" "$DIR/head.log" "$(cat "$DIR/head.pgid")" || return 1

    start_sampler "$HEAD_IP:$gcs" || return 1
    wait_started "$DIR/head.log" "$(cat "$DIR/head.pgid")" || return 1
    wait_started "$DIR/sampler.log" "$(cat "$DIR/sampler.pgid")" || return 1

    # Both nodes registered; their ids (to check where EnvRunners ran).
    local head_node sampler_node
    read -r head_node sampler_node < <(node_ids "http://127.0.0.1:$dash") || return 1
    [[ -n "${sampler_node:-}" ]] || return 1
    cat >"$DIR/env" <<EOF
export RAY_TMPDIR='$RAY_TMPDIR'
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN='$RAY_AUTH_TOKEN'
export RAY_GCS_ADDRESS='$HEAD_IP:$gcs'
export RAY_DASHBOARD_ADDRESS='http://127.0.0.1:$dash'
export HEAD_NODE_ID='$head_node'
export SAMPLER_NODE_ID='$sampler_node'
EOF
    log "cluster up in $((SECONDS - t0)) s: head $head_node, sampler $sampler_node"
    log "dashboard and job server http://127.0.0.1:$dash, GCS $HEAD_IP:$gcs"
    log "use it with:  source $DIR/env"
    log '  ray job submit --address "$RAY_DASHBOARD_ADDRESS" --working-dir . -- rllib-hatrpo ...'
    log "stop it with: LOCAL_CLUSTER_DIR=$DIR $0 down"
}

sampler_down() {  # the sampler node lost as a machine is: SIGKILL to all its processes at once
    DIR="${LOCAL_CLUSTER_DIR:?set LOCAL_CLUSTER_DIR to the directory of the cluster}"
    [[ -f "$DIR/sampler.pgid" ]] || { log "no sampler node"; return 1; }
    local t0=$SECONDS g deadline
    g="$(cat "$DIR/sampler.pgid")"
    kill -KILL -- "-$g" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$g" && ((SECONDS < deadline)); do sleep 0.2; done
    rm -f "$DIR/sampler.pgid"
    log "sampler node killed in $((SECONDS - t0)) s"
}

sampler_up() {  # a new sampler node for the cluster of $LOCAL_CLUSTER_DIR
    DIR="${LOCAL_CLUSTER_DIR:?set LOCAL_CLUSTER_DIR to the directory of the cluster}"
    # shellcheck disable=SC1091
    source "$DIR/env"
    unset RAY_ADDRESS
    local t0=$SECONDS head_node sampler_node
    start_sampler "$RAY_GCS_ADDRESS" || return 1
    wait_started "$DIR/sampler.log" "$(cat "$DIR/sampler.pgid")" || return 1
    read -r head_node sampler_node < <(node_ids "$RAY_DASHBOARD_ADDRESS" "$SAMPLER_NODE_ID") \
        || return 1
    [[ -n "${sampler_node:-}" ]] || return 1
    sed -i "s/^export SAMPLER_NODE_ID=.*/export SAMPLER_NODE_ID='$sampler_node'/" "$DIR/env"
    log "sampler node $sampler_node up in $((SECONDS - t0)) s"
}

alive() {  # PGID...: whether a process (not a zombie) of these process groups is left
    ps -eo pgid=,stat= | awk -v groups=" $* " \
        'index(groups, " " $1 " ") && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

down() {
    DIR="${LOCAL_CLUSTER_DIR:?set LOCAL_CLUSTER_DIR to the directory of the cluster}"
    local t0=$SECONDS groups=() f g
    for f in "$DIR/sampler.pgid" "$DIR/head.pgid"; do
        [[ -f "$f" ]] && groups+=("$(cat "$f")")
    done
    # `ray start --block` leads a process group holding all of its node's Ray processes (a job
    # driver runs in a group of its own, which Ray's job supervisor kills when it dies). Like
    # `ray stop --force`, but for these groups only: Ray's processes mostly ignore SIGTERM.
    if ((${#groups[@]})); then
        for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
        local deadline=$((SECONDS + 2))
        while alive "${groups[@]}" && ((SECONDS < deadline)); do sleep 0.2; done
        for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
        deadline=$((SECONDS + 10))
        while alive "${groups[@]}" && ((SECONDS < deadline)); do sleep 0.2; done
    fi
    rm -f "$DIR/sampler.pgid" "$DIR/head.pgid"
    log "cluster down in $((SECONDS - t0)) s"
}

demo() {
    local config="${1:-tune_configs/hatrpo_halfcheetah_2x3_quick.yaml}"
    local args=("${@:2}")
    [[ $# -le 1 ]] && args=(--stop-timesteps 8000)
    export LOCAL_CLUSTER_DIR="${LOCAL_CLUSTER_DIR:-$(mktemp -d /tmp/rhc.XXXXXX)}"
    trap 'down' EXIT
    trap 'exit 130' INT TERM
    up || exit 1
    # shellcheck disable=SC1091
    source "$LOCAL_CLUSTER_DIR/env"
    local id="hatrpo-$(date +%Y%m%d-%H%M%S)" t0=$SECONDS rc=0
    log "submitting $id: train $config ${args[*]}"
    local cli=rllib-hatrpo
    command -v rllib-hatrpo >/dev/null || cli="python -m rllib_hatrpo.app.cli"  # not installed yet
    # --working-dir uploads the checkout (not what .gitignore lists, nor .git and .venv).
    (cd "$REPO" && "$RAY" job submit --address "$RAY_DASHBOARD_ADDRESS" --submission-id "$id" \
        --working-dir . -- \
        $cli train "$config" --num-env-runners 1 \
        --set 'env_runners.custom_resources_per_env_runner={sampler: 1}' \
        --run-dir "$LOCAL_CLUSTER_DIR/run" "${args[@]}") || rc=$?
    log "job $id: $("$RAY" list jobs --address "$RAY_DASHBOARD_ADDRESS" --format json \
        2>/dev/null | "$PYTHON" -c '
import json, sys
print(*[j["status"] for j in json.load(sys.stdin) if j["submission_id"] == sys.argv[1]])' \
        "$id") after $((SECONDS - t0)) s"
    "$RAY" list actors --address "$RAY_DASHBOARD_ADDRESS" --detail --format json 2>/dev/null \
        | "$PYTHON" -c '
import json, sys
for actor in json.load(sys.stdin):
    if "EnvRunner" in actor["class_name"]:
        where = "the sampler node" if actor["node_id"] == sys.argv[1] else "NOT the sampler node"
        print("%s ran on node %s (%s)" % (actor["class_name"], actor["node_id"], where))' \
            "$SAMPLER_NODE_ID" >&2
    log "run directory (on the head node): $LOCAL_CLUSTER_DIR/run"
    return "$rc"
}

case "${1:-}" in
    up) up || { down; exit 1; } ;;
    down) down ;;
    sampler-down) sampler_down ;;
    sampler-up) sampler_up ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) demo "$@" ;;
esac
