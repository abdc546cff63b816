#!/usr/bin/env bash
# Runs the test suite that ships inside the published `lapin` crate (its own `tests/`,
# plus its library unit tests) against a freshly built fedamq, with lapin's own runner
# (`cargo test --tests`) and AMQP_ADDR pointing at fedamq.
#
# The crate source comes from the crate registry through cargo (lapin is a dev-dependency of
# this workspace, so `cargo fetch` puts it in ~/.cargo/registry/src). It is copied to
# target/lapin-suite/lapin-<version>/ and built with its own target dir
# (target/lapin-suite/cargo-target) so it never contends for the workspace's lock.
#
# Exclusions: tests/interop/lapin-suite/EXCLUDED.md. Each line of its "## Excluded"
# section of the form
#   - `TEST_NAME` — reason
# is passed to the runner as `--skip TEST_NAME --exact`. Only tests that need
# RabbitMQ's management API or rabbitmqctl may be listed there.
#
# Prints a summary line "lapin-suite: N passed, N failed" and exits non-zero if any
# test failed (or nothing ran).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
start_time=$(date +%s)

echo "== locating the published lapin crate"
cargo fetch --quiet
pkgid="$(cargo pkgid lapin)"          # registry+…#lapin@3.7.2
version="lapin-${pkgid##*@}"
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$version" 2>/dev/null | head -n1)"
if [[ -z "$src" || ! -f "$src/Cargo.toml" ]]; then
  echo "the source of $version was not found after cargo fetch" >&2
  exit 1
fi
echo "   $src"

suite_root="$repo/target/lapin-suite"
suite="$suite_root/$version"
rm -rf "$suite"
mkdir -p "$suite_root"
cp -r "$src" "$suite"
chmod -R u+w "$suite"
# The copy lives under this workspace's directory: make it a workspace of its own.
printf '\n[workspace]\n' >>"$suite/Cargo.toml"
lapin_target="$suite_root/cargo-target"
# No debug info and no incremental state: the suite's build is large (aws-lc-sys for
# lapin's default rustls feature) and debug info only costs disk here.
lapin_env=(CARGO_TARGET_DIR="$lapin_target" CARGO_PROFILE_DEV_DEBUG=false CARGO_INCREMENTAL=0)

echo "== building lapin's tests ($version, default features, with dev-dependencies)"
( cd "$suite" && env "${lapin_env[@]}" cargo test --tests --no-run )

echo "== building fedamq"
cargo build --release
log="$suite_root/fedamq.log"
out="$suite_root/fedamq.out"
./target/release/fedamq --port 0 --management-port 0 --prometheus-port 0 >"$out" 2>"$log" &
broker_pid=$!
cleanup() {
  if kill -0 "$broker_pid" 2>/dev/null; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
addr=""
for _ in $(seq 1 100); do
  addr="$(sed -n 's/^fedamq listening on \([0-9.]*:[0-9]*\)$/\1/p' "$out" | head -n1)"
  [[ -n "$addr" ]] && break
  kill -0 "$broker_pid" 2>/dev/null || { echo "fedamq exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "fedamq did not print its address" >&2; exit 1; }
export AMQP_ADDR="amqp://guest:guest@$addr/%2f"
echo "   fedamq pid $broker_pid at $AMQP_ADDR"

skips=()
while IFS= read -r name; do
  [[ -n "$name" ]] && skips+=(--skip "$name")
done < <(awk '/^## / { in_list = ($0 == "## Excluded") } in_list' "$here/lapin-suite/EXCLUDED.md" \
           | sed -n 's/^- `\([^`]*\)`.*/\1/p')
if ((${#skips[@]})); then
  skips+=(--exact)
  echo "   excluded (see EXCLUDED.md): ${skips[*]}"
fi

echo "== cargo test --tests (lapin's own suite) against fedamq"
results="$suite_root/results.txt"
set +e
( cd "$suite" && env "${lapin_env[@]}" timeout 900 cargo test --tests --no-fail-fast -- "${skips[@]}" ) 2>&1 | tee "$results"
status=${PIPESTATUS[0]}

# tests/publisher_confirms.rs is a program (fn main, no #[test]) that the harness
# compiles but never runs; the crate ships the same file as examples/publisher_confirms.rs.
# Run it as a program too so its assertions (confirms, mandatory return) are exercised.
echo "== examples/publisher_confirms (same file as tests/publisher_confirms.rs, run as a program)"
( cd "$suite" && env "${lapin_env[@]}" timeout 120 cargo run --quiet --example publisher_confirms ) 2>&1 | tee "$suite_root/publisher_confirms.txt"
pc_status=${PIPESTATUS[0]}
set -e

read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1) }
  } END { print p + 0, f + 0 }' "$results")
if [[ $pc_status -eq 0 ]]; then pc=passed; passed=$((passed + 1)); else pc=failed; failed=$((failed + 1)); fi

echo
echo "== per test binary"
awk '/^ *Running / { name = ($2 == "unittests") ? $2 " " $3 : $2 }
     /^test result:/ {
       for (i = 1; i <= NF; i++) { if ($i ~ /^passed;/) p = $(i-1); if ($i ~ /^failed;/) f = $(i-1) }
       printf "   %s: %d passed, %d failed\n", name, p, f
     }' "$results"
echo "   examples/publisher_confirms (as a program): $pc"
echo "== took $(( $(date +%s) - start_time ))s; broker log: $log"
echo "lapin-suite: $passed passed, $failed failed"
if [[ $status -ne 0 || $pc_status -ne 0 || $failed -ne 0 || $passed -eq 0 ]]; then
  exit 1
fi
