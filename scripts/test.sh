#!/usr/bin/env bash
# The whole test suite: formatting, vet, and every package's tests with the
# race detector, in one go test run.
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

# The SigV4 tests (auth.aws) check every signature with Python's botocore,
# pinned and pip-installed into the user cache by
# internal/awsauth/sigv4check on first use: python3 with pip is needed.
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing python3 and pip (the SigV4 tests check signatures with botocore)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
  else
    echo "scripts/test.sh: python3 with pip is needed by the SigV4 tests (internal/awsauth/sigv4check)" >&2
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

echo "== go test -race (every package)"
go test -race -timeout 30m ./...
echo "== go test deploy/helm/test (the Helm chart, its own module)"
(cd deploy/helm/test && go test ./...)
