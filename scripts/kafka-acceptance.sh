#!/usr/bin/env bash
# Issue 19's acceptance at full size: e2e TestKafkaTwoTierExactlyOnce with
# 200,000 tailed lines: the agent (tail -> kafka output, disk buffer) killed
# with SIGKILL 3 times and the test's own Kafka broker restarted once while
# it produces (every line at least once in the topic, duplicates within the
# records in flight at the kills), then the aggregator (kafka input ->
# OpenSearch, id: source) killed 3 times (every line exactly once in the
# index, lag 0). Prints the figures and the machine (nproc, CPU, load).
# Usage: bash scripts/kafka-acceptance.sh [lines]
#   (from anywhere; default 200000; the shared OpenSearch node must run:
#   bash scripts/servers/server.sh start opensearch; the test starts its
#   own broker, so Java and the kafka launcher's cache are needed)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-200000}
echo "== $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD)"
echo "== machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== acceptance: $lines lines, 3 SIGKILLs of the agent, 1 broker restart, 3 SIGKILLs of the aggregator"
SIDELOG_REQUIRE_SERVERS=1 SIDELOG_KAFKA_LINES=$lines go test -count=1 -timeout 60m \
  -run 'TestKafkaTwoTierExactlyOnce' -v ./e2e/ 2>&1 |
  grep -E 'tier [12]:|killed with|broker restarted|private kafka broker|^(--- |FAIL|ok)|not in the topic|duplicates, more|documents in the index|sequence field' || true
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
