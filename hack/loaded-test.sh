#!/usr/bin/env bash
# The whole test suite on a busy machine: `make test` RUNS times in a row (default 3) while
# BUSY processes (default: one per core) spin at nice 0, so the tests share the cores with
# work they do not control, as on a loaded CI runner. Stops at the first failing run.
#   bash hack/loaded-test.sh [RUNS]         logs in ${LOADED_LOGS:-/tmp/loaded-test}/run-N.log
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
busy=${BUSY:-$(nproc)}
logs=${LOADED_LOGS:-/tmp/loaded-test}
mkdir -p "$logs"

spinners=()
stop_spinners() { [ ${#spinners[@]} -eq 0 ] || kill "${spinners[@]}" 2>/dev/null || true; }
trap stop_spinners EXIT
for _ in $(seq "$busy"); do
  nice -n 0 python3 -c 'while True: pass' &
  spinners+=($!)
done

for run in $(seq "$runs"); do
  started=$(date +%s)
  echo "[loaded-test] run $run of $runs, $busy busy loops, $(git rev-parse --short HEAD)" \
    "$(git status --porcelain | grep -q . && echo '(uncommitted changes)')"
  status=0
  make test >"$logs/run-$run.log" 2>&1 || status=$?
  took=$(($(date +%s) - started))
  summary=$(grep -E '[0-9]+ (passed|failed)' "$logs/run-$run.log" | tail -1)
  echo "[loaded-test] run $run: exit $status in $((took / 60)) min $((took % 60)) s," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg): $summary"
  [ "$status" -eq 0 ] || { echo "[loaded-test] see $logs/run-$run.log"; exit "$status"; }
done
