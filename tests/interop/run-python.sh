#!/usr/bin/env bash
# Interop: fedamq against real Python clients from PyPI.
#
#   1. a venv in target/interop-venv with tests/interop/python/requirements.txt
#   2. cargo build --release; start ./target/release/fedamq --port 0 (a free port)
#   3. our pytest suites: tests/interop/python/test_{pika,kombu,celery}.py
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

echo "== start fedamq"
BROKER_LOG="$OUT/fedamq.log"
./target/release/fedamq --port 0 --management-port 0 --prometheus-port 0 --log warn >"$OUT/fedamq.stdout" 2>"$BROKER_LOG" &
BROKER_PID=$!
stop_broker() {
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
}
trap stop_broker EXIT
ADDR=""
for _ in $(seq 1 300); do
    ADDR=$(sed -n 's/^fedamq listening on \(.*\)$/\1/p' "$OUT/fedamq.stdout" | head -n1)
    [ -n "$ADDR" ] && break
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "fedamq exited before listening:"; cat "$BROKER_LOG"; exit 1
    fi
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "fedamq did not print its address in 30 s"; exit 1; }
HOST="${ADDR%:*}"
PORT="${ADDR##*:}"
export FEDAMQ_URL="amqp://guest:guest@${HOST}:${PORT}/%2f"
echo "fedamq pid $BROKER_PID on $HOST:$PORT"

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
run_suite ours-kombu "$HERE" -- test_kombu.py
run_suite celery "$HERE" -- test_celery.py

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

export RABBITMQ_HOST="$HOST" RABBITMQ_5672_TCP="$PORT"
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
