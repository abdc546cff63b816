#!/usr/bin/env bash
# Stops the private RabbitMQ node tests/rabbitmq/start.sh started, and only that one:
# `rabbitmqctl -n <its node> stop`, then its beam.smp by pid if still alive, then the
# epmd it started on its own port; then removes its temp dir.
#
#   tests/rabbitmq/stop.sh [--keep-dir] [DIR]     DIR defaults to $FEDAMQ_TEST_RABBITMQ_DIR
set -uo pipefail

say() { echo "rabbitmq/stop.sh: $*" >&2; }

keep_dir=""
if [ "${1:-}" = "--keep-dir" ]; then
    keep_dir=1
    shift
fi
dir=${1:-${FEDAMQ_TEST_RABBITMQ_DIR:-}}
if [ -z "$dir" ]; then
    say "usage: stop.sh [--keep-dir] DIR (or set FEDAMQ_TEST_RABBITMQ_DIR)"
    exit 2
fi
# Only ever a dir start.sh made.
case "$(basename "$dir")" in
fedamq-test-rabbitmq.*) ;;
*)
    say "$dir is not a directory start.sh made"
    exit 2
    ;;
esac
if [ ! -f "$dir/env" ]; then
    say "$dir/env not found: nothing to stop"
    [ -n "$keep_dir" ] || rm -rf "$dir"
    exit 0
fi

pid="" launcher_pid=""
# shellcheck disable=SC1091
. "$dir/env"
bin=${rabbitmq_bin:?}
node=${RABBITMQ_NODENAME:?}

# True while $1 is a live process of this node: the node name is in its environment
# (RabbitMQ 3.10 does not put it on the command line), so a recycled pid is never killed.
ours() {
    [ -n "$1" ] && { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null |
        grep -qxF -- "RABBITMQ_NODENAME=$node"
}
wait_gone() { # $1 seconds
    local i
    for i in $(seq 1 $(($1 * 10))); do
        if ! ours "$pid" && ! ours "$launcher_pid"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

if ours "$pid" || ours "$launcher_pid"; then
    timeout 60 "$bin/rabbitmqctl" -q -n "$node" stop >/dev/null 2>&1 || true
    if ! wait_gone 30; then
        say "$node did not stop; terminating pid ${pid:-?}"
        ours "$pid" && kill -TERM "$pid" 2>/dev/null
        ours "$launcher_pid" && kill -TERM "$launcher_pid" 2>/dev/null
        if ! wait_gone 10; then
            ours "$pid" && kill -KILL "$pid" 2>/dev/null
            ours "$launcher_pid" && kill -KILL "$launcher_pid" 2>/dev/null
            wait_gone 5 || say "pid ${pid:-?} is still alive"
        fi
    fi
fi
# The epmd the node started listens on the node's own port: stop that one only.
if [ -n "${ERL_EPMD_PORT:-}" ] && command -v epmd >/dev/null 2>&1; then
    epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
    # It takes a moment to go: wait (up to 5 s) until nothing answers on its port.
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$ERL_EPMD_PORT") 2>/dev/null || break
        sleep 0.1
    done
fi
[ -n "$keep_dir" ] || rm -rf "$dir"
exit 0
