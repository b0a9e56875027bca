#!/usr/bin/env bash
# Start Ray on one host of a Serverless Containers cluster: by hand, or from cluster.yaml.
#
#   bash cluster/configs/ray-start.sh head [RAY_START_ARGS...]               # host A
#   bash cluster/configs/ray-start.sh worker HEAD_IP[:PORT] [RAY_START_ARGS...]  # host B, C, ...
#
# Every node gets the label sc_host=<name>: the Membership actor places one
# ContainerScaler on it and registers a host structure of that name, also when the
# node joins after `sc up`. Settings, from the environment:
#
#   SC_HOST            name of this host (default: `hostname -s`)
#   SC_BACKEND         cgroup_v1 | cgroup_v2 | lxc | auto: how this node's containers are
#                      scaled (label sc_backend; default: `sc up --backend`)
#   SC_CGROUP_PARENT   cgroup parent of plain-cgroup containers (label sc_cgroup_parent)
#   SC_EXCLUDE=1       Ray runs here, but no ContainerScaler (a head that only hosts the
#                      control plane)
#   SC_RAY_PORT        GCS port of the head (6379)
#   SC_GCS_REDIS       head only: host:port of a Redis that keeps the GCS's tables (Ray's
#                      GCS fault tolerance, RAY_REDIS_ADDRESS): a head that dies and is
#                      started again with the same port and Redis takes its cluster back;
#                      SC_REDIS_PASSWORD its password, if it has one
#   SC_OBJECT_STORE_MB object store of this node, MiB (200; Ray's default is 30 % of RAM)
#   SC_RAY_DEFAULTS=1  a worker keeps Ray's defaults: without it a worker host starts
#                      with the quiet settings below (issue 16: its idle cost; what each
#                      turns off is in cluster/local.py QUIET_NODE_ENV); any of them
#                      already set in the environment wins (SC_RAY_MINIMAL_AGENT=0 keeps
#                      the node's full dashboard agent)
#
# Ray 2.60 authenticates with a token once ~/.ray/auth_token exists: the head makes
# one, and every worker needs the same file (or RAY_AUTH_TOKEN) before it joins.
set -euo pipefail

cd "$(dirname "$0")/../.."
ray=${RAY:-.venv/bin/ray}
role=${1:?usage: ray-start.sh head|worker [HEAD_IP[:PORT]] [RAY_START_ARGS...]}
shift

export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0
port=${SC_RAY_PORT:-6379}
labels="sc_host=${SC_HOST:-$(hostname -s)}"
if [ -n "${SC_BACKEND:-}" ]; then labels+=",sc_backend=$SC_BACKEND"; fi
if [ -n "${SC_CGROUP_PARENT:-}" ]; then labels+=",sc_cgroup_parent=$SC_CGROUP_PARENT"; fi
if [ "${SC_EXCLUDE:-0}" = 1 ]; then labels+=",sc_exclude=1"; fi
common=(--labels "$labels" --object-store-memory=$(( ${SC_OBJECT_STORE_MB:-200} * 1024 * 1024 )) --disable-usage-stats)

case $role in
  head)
    "$ray" get-auth-token --generate >/dev/null   # a no-op when the token exists
    # A node that dies without a goodbye is declared dead after the GCS's health
    # checks fail: every 1 s, 5 misses (Ray's default is about 15 s).
    export RAY_health_check_period_ms=${RAY_health_check_period_ms:-1000}
    export RAY_health_check_failure_threshold=${RAY_health_check_failure_threshold:-5}
    redis=()
    if [ -n "${SC_GCS_REDIS:-}" ]; then
      # GCS fault tolerance: the GCS keeps its tables in this Redis, so a head started
      # again (same port, same Redis) takes back its worker nodes and detached actors.
      export RAY_REDIS_ADDRESS=$SC_GCS_REDIS
      if [ -n "${SC_REDIS_PASSWORD:-}" ]; then redis=(--redis-password="$SC_REDIS_PASSWORD"); fi
    fi
    exec "$ray" start --head --port="$port" --dashboard-host=0.0.0.0 "${common[@]}" "${redis[@]}" "$@"
    ;;
  worker)
    head=${1:?usage: ray-start.sh worker HEAD_IP[:PORT]}
    shift
    [[ $head == *:* ]] || head="$head:$port"
    if [ ! -s "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
      echo "no Ray token here: copy ~/.ray/auth_token from the head first" >&2
      echo "  (e.g. scp root@${head%:*}:.ray/auth_token ~/.ray/auth_token)" >&2
      exit 1
    fi
    quiet=()
    if [ "${SC_RAY_DEFAULTS:-0}" != 1 ]; then
      # Keep in step with cluster/local.py QUIET_NODE_ENV / QUIET_NODE_ARGS (a test compares).
      export REPORTER_UPDATE_INTERVAL_MS=${REPORTER_UPDATE_INTERVAL_MS:-60000}
      export RAY_enable_metrics_collection=${RAY_enable_metrics_collection:-0}
      export RAY_raylet_report_resources_period_milliseconds=${RAY_raylet_report_resources_period_milliseconds:-1000}
      export RAY_raylet_check_gc_period_milliseconds=${RAY_raylet_check_gc_period_milliseconds:-1000}
      export RAY_local_fs_monitor_interval_ms=${RAY_local_fs_monitor_interval_ms:-1000}
      export RAY_object_manager_timer_freq_ms=${RAY_object_manager_timer_freq_ms:-1000}
      export RAY_kill_idle_workers_interval_ms=${RAY_kill_idle_workers_interval_ms:-1000}
      export RAY_memory_monitor_refresh_ms=${RAY_memory_monitor_refresh_ms:-0}
      export SC_RAY_MINIMAL_AGENT=${SC_RAY_MINIMAL_AGENT:-1}
      export SC_RAY_LAZY_IMPORTS=${SC_RAY_LAZY_IMPORTS:-1}
      # The node's Python processes run cluster/node_site/sitecustomize.py first: the minimal
      # agent; pyarrow (Ray's Arrow serializers), requests, jsonschema and yaml imported at
      # their first use, not at start (nothing turned off).
      export PYTHONPATH="$PWD/cluster/node_site${PYTHONPATH:+:$PYTHONPATH}"
      quiet=(--include-log-monitor=False)
    fi
    exec "$ray" start --address="$head" "${common[@]}" "${quiet[@]}" "$@"
    ;;
  *)
    echo "unknown role $role: head or worker" >&2
    exit 2
    ;;
esac
