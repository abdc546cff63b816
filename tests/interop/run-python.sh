#!/usr/bin/env bash
# Interop: fedamq against real Python clients from PyPI.
#
#   1. a venv in target/interop-venv with tests/interop/python/requirements.txt
#   2. cargo build --release; certificates made with openssl (make-certs.sh); start
#      ./target/release/fedamq --port 0 (a free port) with an amqps listener and the
#      management API over HTTPS too
#   3. our pytest suites: tests/interop/python/test_{pika,tls,kombu,celery}.py, and
#      test_ha_failover.py, which starts its own HA pairs of the same binary (FEDAMQ_BIN)
#   4. the py-amqp and kombu sdists from PyPI: their t/integration suites, with the
#      exclusions listed in tests/interop/python/EXCLUDED.md
#   5. a summary of pass counts; exit non-zero if any test failed or any suite ran none
#
# Environment: PYTHON (default python3), FEDAMQ_ROUND_TRIP_N (default 100000),
# INTEROP_SKIP_BUILD=1 to use the existing target/release/fedamq.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/interop/python"
VENV="$ROOT/target/interop-venv"
SDIST="$ROOT/target/interop-sdist"
OUT="$ROOT/target/interop-results"
PYTHON="${PYTHON:-python3}"
START=$(date +%s)

mkdir -p "$OUT" "$SDIST"
rm -f "$OUT"/*.xml

echo "== python venv ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
    echo "$WANT" > "$STAMP"
fi
PY="$VENV/bin/python"
"$PY" -m pip --disable-pip-version-check list 2>/dev/null \
    | grep -Ei '^(pika|kombu|amqp|celery|pytest|pytest-timeout) ' || true

echo "== cargo build --release"
if [ "${INTEROP_SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release
fi

echo "== TLS certificates (openssl)"
# The amqps listener and the management API's HTTPS, with certificates made now:
# client certificates are checked when sent (verify_peer) but not required.
TLS="$OUT/tls"
rm -rf "$TLS"
"$HERE/make-certs.sh" "$TLS"
cat >"$TLS/fedamq.toml" <<TOML
ssl_port = 0
[ssl_options]
certfile = "$TLS/server.pem"
keyfile = "$TLS/server.key"
cacertfile = "$TLS/ca.pem"
verify = "verify_peer"
fail_if_no_peer_cert = false
[management.ssl]
port = 0
certfile = "$TLS/server.pem"
keyfile = "$TLS/server.key"
TOML

echo "== start fedamq"
BROKER_LOG="$OUT/fedamq.log"
./target/release/fedamq --config "$TLS/fedamq.toml" --port 0 --management-port 0 --prometheus-port 0 --log warn >"$OUT/fedamq.stdout" 2>"$BROKER_LOG" &
BROKER_PID=$!
stop_broker() {
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
}
trap stop_broker EXIT
ADDR="" TLS_ADDR="" HTTPS=""
# printed_line PREFIX: what fedamq printed after PREFIX on a line of its own
printed_line() { sed -n "s|^$1\(.*\)\$|\1|p" "$OUT/fedamq.stdout" | head -n1; }
for _ in $(seq 1 300); do
    ADDR=$(printed_line "fedamq listening on ")
    TLS_ADDR=$(printed_line "fedamq listening for TLS on ")
    HTTPS=$(printed_line "management API on https://")
    [ -n "$ADDR" ] && [ -n "$TLS_ADDR" ] && [ -n "$HTTPS" ] && break
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "fedamq exited before listening:"; cat "$BROKER_LOG"; exit 1
    fi
    sleep 0.1
done
[ -n "$ADDR" ] && [ -n "$TLS_ADDR" ] && [ -n "$HTTPS" ] ||
    { echo "fedamq did not print its three addresses in 30 s:"; cat "$OUT/fedamq.stdout"; exit 1; }
HOST="${ADDR%:*}"
PORT="${ADDR##*:}"
TLS_PORT="${TLS_ADDR##*:}"
export FEDAMQ_URL="amqp://guest:guest@${HOST}:${PORT}/%2f"
export FEDAMQ_TLS_URL="amqps://guest:guest@${HOST}:${TLS_PORT}/%2f" FEDAMQ_TLS_DIR="$TLS"
export FEDAMQ_MANAGEMENT_HTTPS="https://$HTTPS"
export FEDAMQ_BIN="$ROOT/target/release/fedamq"
echo "fedamq pid $BROKER_PID on $HOST:$PORT"
echo "amqps on $HOST:$TLS_PORT, management API on $FEDAMQ_MANAGEMENT_HTTPS"

SUITES=()
# run_suite NAME DIR -- PYTEST-ARGS...: runs pytest in DIR, junit XML to $OUT/NAME.xml
run_suite() {
    local name="$1" dir="$2"; shift 3
    echo
    echo "== suite: $name"
    SUITES+=("$name")
    (cd "$dir" && "$PY" -m pytest -p no:cacheprovider --junitxml="$OUT/$name.xml" "$@") \
        || echo "(suite $name: pytest exited $?)"
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "fedamq died during suite $name; its log:"; tail -n 50 "$BROKER_LOG"
    fi
}

run_suite ours-pika "$HERE" -- test_pika.py
run_suite ours-tls "$HERE" -- test_tls.py
run_suite ours-kombu "$HERE" -- test_kombu.py
run_suite celery "$HERE" -- test_celery.py
run_suite ours-ha-failover "$HERE" -- test_ha_failover.py -s

echo
echo "== registry test suites (sdists)"
AMQP_VER=$(sed -n 's/^amqp==//p' "$HERE/requirements.txt")
KOMBU_VER=$(sed -n 's/^kombu==//p' "$HERE/requirements.txt")
for pkg in "amqp-$AMQP_VER" "kombu-$KOMBU_VER"; do
    if [ ! -d "$SDIST/$pkg/t/integration" ]; then
        "$PY" -m pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
            -d "$SDIST" "amqp==$AMQP_VER" "kombu==$KOMBU_VER"
        tar -xzf "$SDIST/$pkg.tar.gz" -C "$SDIST"
    fi
done

# --deselect for every "| suite | `test id` | reason |" row of EXCLUDED.md
deselects() {
    sed -n "s/^| *$1 *| *\`\\([^\`]*\\)\` *|.*/\\1/p" "$HERE/EXCLUDED.md" | sed 's/^/--deselect=/'
}
mapfile -t AMQP_DESELECT < <(deselects amqp)
mapfile -t KOMBU_DESELECT < <(deselects kombu)
echo "excluded (EXCLUDED.md): amqp ${#AMQP_DESELECT[@]}, kombu ${#KOMBU_DESELECT[@]}"

# kombu's AMQP tests are those marked env('py-amqp'); all must be in test_py_amqp.py
OTHER=$(grep -lE "mark\.env\(['\"]py-amqp['\"]\)" "$SDIST/kombu-$KOMBU_VER"/t/integration/*.py \
    | grep -v '/test_py_amqp.py$' || true)
if [ -n "$OTHER" ]; then
    echo "kombu has py-amqp tests outside test_py_amqp.py, update run-python.sh: $OTHER"
    exit 1
fi

# py-amqp's TLS tests read t/certs/ (in its git repository, not in the sdist): ours,
# with a client certificate from another CA as the "broken" one.
CERTS="$SDIST/amqp-$AMQP_VER/t/certs"
mkdir -p "$CERTS"
cp "$TLS/ca.pem" "$CERTS/ca_certificate.pem"
cp "$TLS/client.pem" "$CERTS/client_certificate.pem"
cp "$TLS/client.key" "$CERTS/client_key.pem"
cp "$TLS/stranger.pem" "$CERTS/client_certificate_broken.pem"
cp "$TLS/stranger.key" "$CERTS/client_key_broken.pem"
export RABBITMQ_HOST="$HOST" RABBITMQ_5672_TCP="$PORT" RABBITMQ_5671_TCP="$TLS_PORT"
run_suite py-amqp-integration "$SDIST/amqp-$AMQP_VER" -- \
    t/integration -W ignore::pytest.PytestUnknownMarkWarning -o timeout=120 "${AMQP_DESELECT[@]}"
run_suite kombu-integration "$SDIST/kombu-$KOMBU_VER" -- \
    t/integration/test_py_amqp.py -W ignore::pytest.PytestUnknownMarkWarning -o timeout=120 \
    "${KOMBU_DESELECT[@]}"

stop_broker
trap - EXIT

echo
echo "== summary"
"$PY" - "$OUT" "$(( $(date +%s) - START ))" "${SUITES[@]}" <<'EOF'
import sys
import xml.etree.ElementTree as ET

out, elapsed, suites = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
bad = False
tot = dict(passed=0, failed=0, xfailed=0, skipped=0)
print(f"{'suite':<22}{'passed':>8}{'failed':>8}{'errors':>8}{'xfailed':>9}{'skipped':>9}")
for name in suites:
    try:
        root = ET.parse(f"{out}/{name}.xml").getroot()
    except (OSError, ET.ParseError):
        print(f"{name:<22} no results (pytest did not run)")
        bad = True
        continue
    ts = root if root.tag == "testsuite" else root.find("testsuite")
    n, f, e, s = (int(ts.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    xfailed = sum(
        1 for tc in ts.iter("testcase")
        for sk in tc.findall("skipped") if sk.get("type") == "pytest.xfail"
    )
    skipped = s - xfailed
    passed = n - f - e - s
    print(f"{name:<22}{passed:>8}{f:>8}{e:>8}{xfailed:>9}{skipped:>9}")
    if f or e or passed == 0:
        bad = True
    tot["passed"] += passed
    tot["failed"] += f + e
    tot["xfailed"] += xfailed
    tot["skipped"] += skipped
print(f"runtime {elapsed} s")
print(f"interop: {tot['passed']} passed, {tot['failed']} failed, {tot['skipped']} skipped")
sys.exit(1 if bad else 0)
EOF
