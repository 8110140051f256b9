#!/usr/bin/env bash
# The whole test suite: formatting, vet, every package's tests with the race
# detector, and the Datadog output (whose client is large) without cgo.
# Usage: bash scripts/test.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

# The race detector needs cgo, hence a C compiler.
if ! command -v gcc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing gcc (needed by go test -race)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null
  else
    echo "scripts/test.sh: gcc is needed for 'go test -race': apt-get install gcc" >&2
    exit 1
  fi
fi

# Real servers (scripts/servers) for the tests that need them: started once
# for the whole run while gofmt and vet work, stopped by pid on exit or Ctrl-C.
. scripts/servers/suite.sh
servers_start opensearch kafka elasticsearch7

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

servers_wait

# The Datadog client is a very large package: the race run leaves it out
# (-tags nodatadog), and output/datadog is tested on its own without cgo (its
# client uses cgo only for a zstd compression sidelog does not use).
pkgs=$(go list -tags nodatadog ./... | grep -v '/output/datadog')
echo "== go test -race (all packages but output/datadog)"
go test -race -tags nodatadog -timeout 20m $pkgs
echo "== go test output/datadog, and the packages that check every plugin, with datadog (no cgo)"
CGO_ENABLED=0 go test -timeout 10m ./output/datadog/... ./docs/ ./cmd/sidelog-bench/
