#!/usr/bin/env bash
# Static release binaries of the whole agent, stamped with version, commit
# and build date (`sidelog version` prints them).
# Usage: bash scripts/build.sh [OUTDIR]          (from anywhere; default dist/)
#   VERSION   default: git describe --tags --always --dirty, else "dev"
#   COMMIT    default: git rev-parse HEAD, else "unknown"
#   DATE      default: now, RFC 3339 UTC (or SOURCE_DATE_EPOCH, for reproducible builds)
#   PLATFORMS default: "linux/amd64 linux/arm64"
# Writes OUTDIR/sidelog-<os>-<arch> and OUTDIR/SHA256SUMS.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
if [ -z "${DATE:-}" ]; then
  if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    DATE=$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)
  else
    DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  fi
fi
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64"}

ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}"
mkdir -p "$out"
for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  bin="$out/sidelog-$os-$arch"
  echo "== $bin ($VERSION, $COMMIT, $DATE)"
  # CGO_ENABLED=0: a static binary (distroless/static, any libc); it also
  # leaves out the Datadog client's cgo zstd, which sidelog does not use.
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
    -ldflags "$ldflags" -o "$bin" ./cmd/sidelog
done
(cd "$out" && sha256sum sidelog-* > SHA256SUMS)
