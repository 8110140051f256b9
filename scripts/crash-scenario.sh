#!/usr/bin/env bash
# Issue 14's acceptance scenario, several times with different seeds: an
# app writes app.log at ~25,000 lines/s in bursts and renames it out of the
# glob while the agent (disk buffer, file output) is killed with SIGKILL 12
# times; then the same with the kubelet's rotation, with copytruncate, and
# with a memory buffer. Prints one FIGURES line per run: lines, lost,
# duplicates and their share.
# Usage: bash scripts/crash-scenario.sh [runs] [test regexp]
#   (from the repository root; defaults: 5 runs of every scenario)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
tests=${2:-'TestRotateCrash'}
for i in $(seq 1 "$runs"); do
  seed=$((1000 + i * 7919))
  echo "== run $i, seed $seed"
  SIDELOG_CRASH_FULL=1 SIDELOG_CRASH_SEED=$seed go test -count=1 -timeout 30m -run "$tests" -v ./e2e/ 2>&1 |
    grep -E 'FIGURES|^(--- |FAIL|ok)|lost|duplicates' || true
done
