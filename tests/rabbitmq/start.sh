#!/usr/bin/env bash
# Starts a private RabbitMQ node for the tests and prints, on stdout, the shell lines
# that tell the tests (and tests/rabbitmq/stop.sh) about it:
#
#   eval "$(tests/rabbitmq/start.sh)"
#   cargo test --test rabbitmq_smoke        # reads FEDAMQ_TEST_RABBITMQ_URL
#   tests/rabbitmq/stop.sh                  # stops exactly that node, removes its dir
#
# The node is RabbitMQ from Debian's packages (`apt-get install rabbitmq-server`), run as
# the calling user straight from /usr/lib/rabbitmq/bin (the /usr/sbin wrappers switch to
# the rabbitmq user when run as root and lose the environment set here). Everything it
# owns is private, so it never touches another RabbitMQ on the host (the system one, or
# one another tool started): its own temp dir (data, logs, config, no plugins, and HOME,
# so the Erlang cookie is its own), its own node name, and its own ports, chosen now on
# 127.0.0.1: AMQP, Erlang distribution, epmd and the CLI tools' distribution ports.
#
# The user is fedamq-test with a random password, tagged administrator (for the
# management API), with full permissions on vhost "/"
# and on a second vhost, fedamq-test. Progress goes to stderr; stdout is only the
# export lines:
#
#   export FEDAMQ_TEST_RABBITMQ_URL=amqp://fedamq-test:<pw>@127.0.0.1:<port>/%2f
#   export FEDAMQ_TEST_RABBITMQ_PID=<pid of the node's beam.smp>
#   export FEDAMQ_TEST_RABBITMQ_NODE=fedamq-test-<pid>@localhost
#   export FEDAMQ_TEST_RABBITMQ_DIR=<its temp dir>
#   export FEDAMQ_TEST_RABBITMQ_MANAGEMENT_URL=http://127.0.0.1:<port>
#
# The management plugin (rabbitmq_management, shipped in Debian's package) is enabled
# on its own port, so the management API tests can compare fedamq's HTTP API with
# RabbitMQ's; FEDAMQ_TEST_RABBITMQ_MANAGEMENT=0 leaves it off (a faster start). The
# federation plugin (rabbitmq_federation) is enabled too, so tests/federation.rs can
# run RabbitMQ downstream of fedamq; FEDAMQ_TEST_RABBITMQ_FEDERATION=0 leaves it off.
#
#   export FEDAMQ_TEST_RABBITMQ_AMQPS_URL=amqps://fedamq-test:<pw>@127.0.0.1:<tls port>/%2f
#   export FEDAMQ_TEST_RABBITMQ_CACERT=<its dir>/tls/ca.pem
#
# The node also listens for TLS (amqps) when `openssl` is on PATH, with a CA and a server
# certificate for 127.0.0.1 and localhost made now in <its dir>/tls (ca.pem,
# server.pem, server.key; client.pem and client.key, CN fedamq-test, for mutual TLS,
# which the node accepts but does not require). Without openssl the two AMQPS lines
# are left out.
#
# Environment: RABBITMQ_BIN_DIR (default /usr/lib/rabbitmq/bin), TMPDIR,
# FEDAMQ_TEST_RABBITMQ_START_TIMEOUT (seconds, default 120).
set -euo pipefail

say() { echo "rabbitmq/start.sh: $*" >&2; }

bin=${RABBITMQ_BIN_DIR:-}
if [ -z "$bin" ]; then
    if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
        bin=/usr/lib/rabbitmq/bin
    elif server=$(command -v rabbitmq-server 2>/dev/null); then
        bin=$(dirname "$(readlink -f "$server")")
    fi
fi
if [ -z "$bin" ] || [ ! -x "$bin/rabbitmq-server" ] || [ ! -x "$bin/rabbitmqctl" ]; then
    say "RabbitMQ is not installed (no rabbitmq-server in /usr/lib/rabbitmq/bin or on PATH)."
    say "Install Debian's package: sudo apt-get install rabbitmq-server"
    say "(then 'sudo service rabbitmq-server stop' if you do not want the system node running)."
    exit 2
fi

timeout_s=${FEDAMQ_TEST_RABBITMQ_START_TIMEOUT:-120}

# A port nothing on 127.0.0.1 listens on, picked at random in [lo, hi].
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local lo=$1 hi=$2 p i
    for i in $(seq 1 200); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        if port_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    say "no free port in $lo..$hi"
    return 1
}

random_alnum() { # $1 characters from [A-Za-z0-9] ($2: a tr class to keep instead)
    local out=""
    while [ "${#out}" -lt "$1" ]; do
        out+=$(head -c 64 /dev/urandom | base64 -w0 | tr -dc "${2:-A-Za-z0-9}")
    done
    echo "${out:0:$1}"
}

# The open-files limit: RabbitMQ wants far more than the usual 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

dir=$(mktemp -d "${TMPDIR:-/tmp}/fedamq-test-rabbitmq.XXXXXX")
node="fedamq-test-$$@localhost"
mkdir -p "$dir/log" "$dir/mnesia"
# Only the plugins chosen here, whatever the host enables, and an almost empty config
# so /etc/rabbitmq does not apply (RABBITMQ_ADVANCED_CONFIG_FILE names a file that does
# not exist: an empty one is an error). rabbitmq.conf is written by each attempt, which
# picks the management port.
management=${FEDAMQ_TEST_RABBITMQ_MANAGEMENT:-1}
plugins=()
[ "$management" = 0 ] || plugins+=(rabbitmq_management)
[ "${FEDAMQ_TEST_RABBITMQ_FEDERATION:-1}" = 0 ] || plugins+=(rabbitmq_federation)
(IFS=,; echo "[${plugins[*]}]." >"$dir/enabled_plugins")
: >"$dir/rabbitmq-env.conf"
# The Erlang cookie: HOME is the node's dir, for the node and for rabbitmqctl alike.
random_alnum 20 A-Z >"$dir/.erlang.cookie"
chmod 400 "$dir/.erlang.cookie"

password=$(random_alnum 24)

# Certificates for the amqps listener (CA, server for 127.0.0.1/localhost, a client).
tls=""
if command -v openssl >/dev/null 2>&1; then
    t="$dir/tls"
    mkdir -p "$t"
    if {
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=fedamq test CA" \
            -keyout "$t/ca.key" -out "$t/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
                -keyout "$t/server.key" -out "$t/server.csr" &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$t/server.ext" &&
            openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
                -CAcreateserial -days 30 -extfile "$t/server.ext" -out "$t/server.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=fedamq-test" \
                -keyout "$t/client.key" -out "$t/client.csr" &&
            printf 'extendedKeyUsage=clientAuth\n' >"$t/client.ext" &&
            openssl x509 -req -in "$t/client.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
                -CAcreateserial -days 30 -extfile "$t/client.ext" -out "$t/client.pem"
    } >"$t/openssl.log" 2>&1; then
        chmod 644 "$t"/*.key
        tls=1
    else
        say "making test certificates failed (see $t/openssl.log); no TLS listener"
    fi
fi

# One attempt on a fresh set of ports (another process may take a port between the check
# and the node's bind; the node then fails to start and the next attempt picks again).
attempt() {
    local port dist_port epmd_port ctl_min launcher pid deadline mgmt_port
    # (set -e does not apply inside a function called as an `if` condition.)
    port=$(pick_port 15000 19999) || return 1
    dist_port=$(pick_port 20000 24989) || return 1
    ctl_min=$((dist_port + 10000))
    epmd_port=$(pick_port 25000 29999) || return 1
    mgmt_port=""
    cat >"$dir/rabbitmq.conf" <<CONF
# private test node started by fedamq's tests/rabbitmq/start.sh
disk_free_limit.absolute = 50MB
CONF
    if [ "$management" != 0 ]; then
        mgmt_port=$(pick_port 30000 32767) || return 1
        cat >>"$dir/rabbitmq.conf" <<CONF
management.tcp.ip = 127.0.0.1
management.tcp.port = $mgmt_port
CONF
    fi
    ssl_port=""
    if [ -n "$tls" ]; then
        ssl_port=$(pick_port 30000 32767) || return 1
        cat >>"$dir/rabbitmq.conf" <<CONF
listeners.ssl.default = $ssl_port
ssl_options.cacertfile = $dir/tls/ca.pem
ssl_options.certfile = $dir/tls/server.pem
ssl_options.keyfile = $dir/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
CONF
    fi
    rm -rf "$dir/mnesia" "$dir/log" && mkdir -p "$dir/mnesia" "$dir/log"

    # Everything the node and rabbitmqctl need, also for stop.sh.
    cat >"$dir/env" <<ENV
export HOME=$(printf '%q' "$dir")
export RABBITMQ_NODENAME=$(printf '%q' "$node")
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$port
export RABBITMQ_DIST_PORT=$dist_port
export RABBITMQ_CTL_DIST_PORT_MIN=$ctl_min
export RABBITMQ_CTL_DIST_PORT_MAX=$((ctl_min + 10))
export ERL_EPMD_PORT=$epmd_port
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
export RABBITMQ_MNESIA_BASE=$(printf '%q' "$dir/mnesia")
export RABBITMQ_LOG_BASE=$(printf '%q' "$dir/log")
export RABBITMQ_PID_FILE=$(printf '%q' "$dir/rabbit.pid")
export RABBITMQ_ENABLED_PLUGINS_FILE=$(printf '%q' "$dir/enabled_plugins")
export RABBITMQ_CONFIG_FILE=$(printf '%q' "$dir/rabbitmq")
export RABBITMQ_ADVANCED_CONFIG_FILE=$(printf '%q' "$dir/advanced.config")
export RABBITMQ_CONF_ENV_FILE=$(printf '%q' "$dir/rabbitmq-env.conf")
rabbitmq_bin=$(printf '%q' "$bin")
ENV
    # shellcheck disable=SC1091
    . "$dir/env"

    say "starting $node on 127.0.0.1:$port (dir $dir)"
    # In a session of its own, so a Ctrl-C at the terminal reaches the test runner (whose
    # trap runs stop.sh), not the node; stdout/stderr go to a file so that
    # "$(start.sh)" does not wait for the node to exit.
    if command -v setsid >/dev/null 2>&1; then
        (cd "$dir" && exec setsid "$bin/rabbitmq-server") </dev/null >"$dir/console.log" 2>&1 &
    else
        (cd "$dir" && exec "$bin/rabbitmq-server") </dev/null >"$dir/console.log" 2>&1 &
    fi
    launcher=$!
    echo "launcher_pid=$launcher" >>"$dir/env"

    # await_startup fails at once while the node is not yet registered with epmd, so it is
    # retried until the node is up, its start script exited, or the time is up.
    deadline=$((SECONDS + timeout_s))
    until "$bin/rabbitmqctl" -q -n "$node" await_startup --timeout "$timeout_s" >/dev/null 2>&1; do
        if ! kill -0 "$launcher" 2>/dev/null; then
            say "the node exited while starting"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the node did not start within ${timeout_s}s"
            return 1
        fi
        sleep 1
    done

    # The node writes its OS pid (beam.smp's) to the pid file.
    pid=$(cat "$dir/rabbit.pid" 2>/dev/null || true)
    if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != beam.smp ]; then
        pid=$launcher
    fi
    echo "pid=$pid" >>"$dir/env"
    if port_free "$port"; then
        say "the node started but nothing listens on 127.0.0.1:$port"
        return 1
    fi
    echo "$port" >"$dir/port"
    if [ -n "$mgmt_port" ]; then
        # The HTTP listener comes up with the plugin, after await_startup; wait for it.
        until ! port_free "$mgmt_port"; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "the management plugin did not listen on 127.0.0.1:$mgmt_port"
                return 1
            fi
            sleep 1
        done
        echo "$mgmt_port" >"$dir/management_port"
    fi
    echo "$ssl_port" >"$dir/ssl_port"
}

# stop.sh knows how to stop whatever an attempt left behind; if this script fails or is
# interrupted before it prints the exports, nobody else could stop the node.
stop_sh="$(cd "$(dirname "$0")" && pwd)/stop.sh"
handed_over=""
on_exit() {
    if [ -z "$handed_over" ]; then
        "$stop_sh" "$dir" >&2 || true
        rm -rf "$dir"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=""
for try in 1 2 3; do
    if attempt; then
        started=1
        break
    fi
    say "attempt $try failed; last lines of its console output and log:"
    tail -n 20 "$dir/console.log" >&2 2>/dev/null || true
    tail -n 20 "$dir"/log/*.log >&2 2>/dev/null || true
    "$stop_sh" --keep-dir "$dir" >&2 || true
    # Only a port taken meanwhile is worth another attempt.
    if ! cat "$dir/console.log" "$dir"/log/*.log 2>/dev/null | grep -qi eaddrinuse; then
        break
    fi
done
if [ -z "$started" ]; then
    say "RabbitMQ did not start"
    exit 1
fi

ctl() { "$bin/rabbitmqctl" -q -n "$node" "$@" >/dev/null; }
if ! {
    ctl add_user fedamq-test "$password" &&
        ctl set_permissions -p / fedamq-test '.*' '.*' '.*' &&
        ctl add_vhost fedamq-test &&
        ctl set_permissions -p fedamq-test fedamq-test '.*' '.*' '.*' &&
        ctl set_user_tags fedamq-test administrator
}; then
    say "setting up user fedamq-test failed; stopping the node"
    exit 1
fi

port=$(cat "$dir/port")
# shellcheck disable=SC1091
pid=$(. "$dir/env" && echo "${pid:-}")
say "RabbitMQ $node is up on 127.0.0.1:$port (pid $pid); user fedamq-test, vhosts / and fedamq-test"
handed_over=1
printf 'export FEDAMQ_TEST_RABBITMQ_URL=%q\n' "amqp://fedamq-test:$password@127.0.0.1:$port/%2f"
printf 'export FEDAMQ_TEST_RABBITMQ_PID=%q\n' "$pid"
printf 'export FEDAMQ_TEST_RABBITMQ_NODE=%q\n' "$node"
printf 'export FEDAMQ_TEST_RABBITMQ_DIR=%q\n' "$dir"
if [ -f "$dir/management_port" ]; then
    printf 'export FEDAMQ_TEST_RABBITMQ_MANAGEMENT_URL=%q\n' \
        "http://127.0.0.1:$(cat "$dir/management_port")"
fi
ssl_port=$(cat "$dir/ssl_port")
if [ -n "$ssl_port" ]; then
    printf 'export FEDAMQ_TEST_RABBITMQ_AMQPS_URL=%q\n' "amqps://fedamq-test:$password@127.0.0.1:$ssl_port/%2f"
    printf 'export FEDAMQ_TEST_RABBITMQ_CACERT=%q\n' "$dir/tls/ca.pem"
fi
