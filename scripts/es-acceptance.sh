#!/usr/bin/env bash
# Issue 16's acceptance against the real engines, at full size: 200,000
# tailed lines (1% breaking the mapping) through a disk buffer with id:
# source, 3 SIGKILLs during delivery, into OpenSearch 2.19 (bulk and
# data_stream) and Elasticsearch 7.17 (bulk); then the ingest benchmark
# (documents a second into the node, the agent's CPU seconds per 100,000
# documents) for docs/benchmarks.md. Prints the FIGURES lines, the
# benchmark lines and the machine (nproc, CPU model, load).
# Usage: bash scripts/es-acceptance.sh [lines] [benchmark lines]
#   (from anywhere; defaults 200000 and 200000; the servers must run:
#   bash scripts/servers/server.sh start opensearch elasticsearch7)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-200000}
bench=${2:-200000}
echo "== $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD)"
echo "== machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== acceptance: $lines lines, 3 SIGKILLs"
SIDELOG_REQUIRE_SERVERS=1 SIDELOG_ES_ACCEPT_LINES=$lines go test -count=1 -timeout 60m \
  -run 'TestSearchExactlyOnce' -v ./e2e/ 2>&1 | grep -E 'FIGURES|killed at|final run|^(--- |FAIL|ok)|missing|twice|dead-letter' || true
echo "== benchmark: $bench lines, load $(cut -d' ' -f1-3 /proc/loadavg)"
SIDELOG_REQUIRE_SERVERS=1 SIDELOG_ES_BENCH_LINES=$bench go test -count=1 -timeout 60m \
  -run '^$' -bench 'BenchmarkSearchIngest' -benchtime=1x ./e2e/ 2>&1 | grep -E '^Benchmark|FAIL|ok' || true
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
