#!/usr/bin/env bash
# Proves the README's first command as written: `cargo run --release` starts the broker
# on 127.0.0.1:5672 with guest/guest on vhost "/". Starts it exactly so, waits until it
# says it listens, publishes one message with a confirm and consumes it with fedamq-perf
# (a client of its own, built from this repository), then stops the broker by its pid
# with SIGTERM and checks it exits cleanly. .ci/run calls it before tests/run.
#
# It needs port 5672 on 127.0.0.1, the README's port: if anything listens there already
# it fails saying so, rather than testing another port (which would not be the README's
# command).
#
# Environment: README_RUN_TIMEOUT (seconds to wait for the build and start, default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "readme-run: $*"; }
listening() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if listening; then
    say "something already listens on 127.0.0.1:5672, the port the README's command uses:"
    (ss -ltnp 2>/dev/null || true) | grep -E ':5672\b' || true
    exit 1
fi

log=$(mktemp)
pid=""
stop() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
}
trap 'stop; rm -f "$log"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Clients use the release build of fedamq-perf; build it first so the broker's start is
# not raced by a second build.
say "cargo build --release --bin fedamq-perf"
cargo build --release --bin fedamq-perf

say "cargo run --release   (the README's command, in the background)"
cargo run --release >"$log" 2>&1 &
pid=$!

timeout_s=${README_RUN_TIMEOUT:-1800}
deadline=$((SECONDS + timeout_s))
until grep -q "^fedamq listening on 127.0.0.1:5672$" "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        say "the broker exited before listening; its output:"
        cat "$log"
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "not listening after ${timeout_s}s; output so far:"
        cat "$log"
        exit 1
    fi
    sleep 1
done
# `cargo run` replaces itself with the binary (exec) on Unix, so $pid is the broker.
say "$(grep -m1 '^fedamq listening' "$log") (pid $pid, $(ps -o comm= -p "$pid"))"
listening || { say "the broker says it listens, but 127.0.0.1:5672 refuses connections"; exit 1; }

say "publish one message with a confirm and consume it (fedamq-perf, default URI amqp://guest:guest@127.0.0.1:5672/%2f)"
result=$(target/release/fedamq-perf -x 1 -y 1 -C 1 -D 1 -c 1 -u readme-run --cleanup --json --quiet)
echo "$result"
for count in published confirmed consumed; do
    if ! echo "$result" | grep -Eq "\"$count\": ?1,"; then
        say "expected one message published, confirmed and consumed"
        exit 1
    fi
done

say "stopping the broker (SIGTERM to pid $pid)"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
if [ "$status" -ne 0 ]; then
    say "the broker exited with status $status; its output:"
    cat "$log"
    exit 1
fi
say "ok: the README's command serves on 127.0.0.1:5672 and stops on SIGTERM"
