#!/usr/bin/env bash
# Runs the test suite N times in a row to expose flaky tests: one line per run, then a summary.
#
#   bash tests/stress.sh [N] [pytest args...]    # N defaults to 5; e.g. bash tests/stress.sh 2 tests/test_agents
#
# Each run is `python3 -m pytest -q -rfE [pytest args...]` from the repository root. A failed
# run's full output is kept (its path is printed); exits 1 if any run failed.
set -u

runs=5
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    runs=$1
    shift
fi
if [[ $runs -lt 1 ]]; then
    echo "stress: the number of runs must be >= 1, got $runs" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
logs=$(mktemp -d "${TMPDIR:-/tmp}/stress.XXXXXX")
failed=0
for ((run = 1; run <= runs; run++)); do
    log="$logs/run_$run.log"
    started=$(date +%s.%N)
    python3 -m pytest -q -rfE "$@" >"$log" 2>&1
    status=$?
    seconds=$(awk -v start="$started" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }')
    if [[ $status -eq 0 ]]; then
        echo "run $run/$runs: pass ${seconds}s"
        rm -f "$log"
        continue
    fi
    failed=$((failed + 1))
    # pytest's short summary: "FAILED tests/x.py::test_y - message" / "ERROR tests/x.py::test_z - ...".
    ids=$(sed -n -E 's/^(FAILED|ERROR) ([^ ]+).*/\2/p' "$log" | sort -u | paste -sd ' ' -)
    echo "run $run/$runs: FAIL ${seconds}s (pytest exit $status) ${ids:-no test ids in the summary} [log: $log]"
done
echo "stress: $runs runs, $failed failed"
if [[ $failed -eq 0 ]]; then
    rmdir "$logs" 2>/dev/null
    exit 0
fi
exit 1
