#!/usr/bin/env bash
# Real servers for sidelog's test suite (test infrastructure only: the agent
# never needs Java). Each server is a small Maven project in a folder beside
# this script (pom.xml listing its jars, Launch.java starting it); the jars are
# resolved from Maven Central once into a cache and the launcher is compiled
# with javac.
#
#   scripts/servers/server.sh start NAME...   start (or reuse) servers; prints "NAME URL" per server
#   scripts/servers/server.sh stop NAME...|all  stop them by pid
#   scripts/servers/server.sh status          what runs, with pid and URL
#   scripts/servers/server.sh env             export lines for the running servers
#   scripts/servers/server.sh prepare NAME... resolve jars and compile only
#   NAME: opensearch | kafka | elasticsearch7
#
# Environment:
#   SIDELOG_SERVERS_STATE  folder of pid, url, log files and data (default
#                          ${TMPDIR:-/tmp}/sidelog-servers-$UID); the Go
#                          helper internal/testservers reads it too
#   SIDELOG_SERVERS_CACHE  folder of resolved jars and compiled launchers
#                          (default ${XDG_CACHE_HOME:-~/.cache}/sidelog-servers)
#   SIDELOG_SERVERS_START_TIMEOUT  seconds to wait for readiness (default 420)
#   MAVEN_REPO_LOCAL       a Maven local repository other than ~/.m2/repository
#   JAVA_HOME              the JDK to use (default: java and javac on PATH)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${SIDELOG_SERVERS_STATE:-${TMPDIR:-/tmp}/sidelog-servers-$(id -u)}
cache=${SIDELOG_SERVERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidelog-servers}
timeout=${SIDELOG_SERVERS_START_TIMEOUT:-420}
heap=512m

die() { echo "server.sh: $*" >&2; exit 1; }

known() {
  case "$1" in
    opensearch | kafka | elasticsearch7) return 0 ;;
    *) return 1 ;;
  esac
}

envname() {
  case "$1" in
    opensearch) echo SIDELOG_OPENSEARCH_URL ;;
    elasticsearch7) echo SIDELOG_ES7_URL ;;
    kafka) echo SIDELOG_KAFKA_BROKERS ;;
  esac
}

url_for() { # NAME PORT
  case "$1" in
    kafka) echo "127.0.0.1:$2" ;;
    *) echo "http://127.0.0.1:$2" ;;
  esac
}

# need CMD PACKAGE: install a missing Debian package when root (as a fresh CI
# machine runs), else say what is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "server.sh: $1 not found: installing $2" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}

tools() {
  if [ -z "${JAVA_HOME:-}" ]; then need javac openjdk-17-jdk-headless || true; fi
  java=java javac=javac
  if [ -n "${JAVA_HOME:-}" ]; then java=$JAVA_HOME/bin/java javac=$JAVA_HOME/bin/javac; fi
  command -v "$java" >/dev/null 2>&1 ||
    die "java not found: the test servers need a JDK 17 or newer (apt-get install openjdk-17-jdk-headless, or set JAVA_HOME)"
  command -v "$javac" >/dev/null 2>&1 ||
    die "javac not found: the test servers need a JDK, not only a JRE (apt-get install openjdk-17-jdk-headless, or set JAVA_HOME)"
  local v
  v=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "$java is Java ${v:-?}: the test servers need Java 17 or newer (set JAVA_HOME)"
}

# prepare NAME: resolve the jars into $cache/NAME/lib and compile the launcher,
# unless the cache was made from the same pom.xml and Launch.java. When only
# Launch.java changed, only the launcher is compiled again (the jars stay, as
# a running server of the same cache needs them).
prepare() {
  # One prepare per cache at a time (go test runs the packages that start
  # a private broker in parallel, each calling prepare): the others wait
  # and then find the cache ready.
  mkdir -p "$cache"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/$1.lock"
    flock 9
  fi
  local rc=0
  prepare_locked "$1" || rc=$?
  exec 9>&-
  return "$rc"
}

prepare_locked() {
  local name=$1 dir=$here/$1 out=$cache/$1 sum libsum
  tools
  sum=$(cat "$dir/pom.xml" "$dir/Launch.java" | cksum | cut -d' ' -f1)
  if [ -f "$out/ready" ] && [ "$(cat "$out/ready")" = "$sum" ]; then
    return 0
  fi
  libsum=$(cksum <"$dir/pom.xml" | cut -d' ' -f1)
  if [ -d "$out/lib" ] && [ -f "$out/lib.sum" ] && [ "$(cat "$out/lib.sum")" = "$libsum" ]; then
    echo "server.sh: compiling $name's launcher again (its jars are unchanged)" >&2
    rm -rf "$out/classes.$$"
    "$javac" -nowarn -d "$out/classes.$$" -cp "$out/lib/*" "$dir/Launch.java" ||
      die "could not compile $dir/Launch.java"
    rm -rf "$out/classes.old.$$"
    if [ -d "$out/classes" ]; then mv "$out/classes" "$out/classes.old.$$"; fi
    mv "$out/classes.$$" "$out/classes"
    rm -rf "$out/classes.old.$$"
    echo "$sum" >"$out/ready"
    return 0
  fi
  need mvn maven || true
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: the test servers' jars come from Maven Central through Maven (apt-get install maven)"
  echo "server.sh: resolving $name's jars from Maven Central into $out (once)" >&2
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  local repo=()
  if [ -n "${MAVEN_REPO_LOCAL:-}" ]; then repo=(-Dmaven.repo.local="$MAVEN_REPO_LOCAL"); fi
  local try ok=
  for try in 1 2 3; do
    if mvn -B -q "${repo[@]}" -f "$dir/pom.xml" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$out.tmp/lib" >"$out.tmp/mvn.log" 2>&1; then
      ok=1
      break
    fi
    echo "server.sh: maven failed (try $try of 3):" >&2
    tail -20 "$out.tmp/mvn.log" >&2
    sleep $((try * 5))
  done
  [ -n "$ok" ] || die "could not resolve $name's jars (see above)"
  "$javac" -nowarn -d "$out.tmp/classes" -cp "$out.tmp/lib/*" "$dir/Launch.java" ||
    die "could not compile $dir/Launch.java"
  echo "$libsum" >"$out.tmp/lib.sum"
  echo "$sum" >"$out.tmp/ready"
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

# ours PID NAME: the pid is a live launcher of NAME in this state folder (not
# a recycled pid of some other process).
ours() {
  local pid=$1 name=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$state/$name/home"
}

running() { # NAME -> 0 if its launcher runs and is ready
  local name=$1 pid
  [ -f "$state/$name.pid" ] && [ -f "$state/$name.url" ] || return 1
  pid=$(cat "$state/$name.pid")
  ours "$pid" "$name"
}

# launch NAME: start NAME's launcher in the background (ready or not).
launch() {
  local name=$1 pid
  mkdir -p "$state"
  rm -rf "${state:?}/$name" "$state/$name.port" "$state/$name.url"
  mkdir -p "$state/$name/home"
  local args=(-Xms128m -Xmx$heap -XX:+UseSerialGC -XX:-UsePerfData -Djava.io.tmpdir="$state/$name/home"
    -Djava.awt.headless=true -Dfile.encoding=UTF-8)
  case "$name" in
    kafka) args+=(-Dlog4j2.configurationFile="$here/kafka/log4j2.yaml") ;;
  esac
  echo "server.sh: starting $name (log: $state/$name.log)" >&2
  # setsid: a Ctrl-C meant for go test reaches the server only through stop.
  setsid "$java" "${args[@]}" -cp "$cache/$name/lib/*:$cache/$name/classes" \
    Launch "$state/$name/home" "$state/$name.port" </dev/null >"$state/$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$state/$name.pid"
}

# await NAME: wait until NAME's launcher has written its port, or has died, or
# the time is out, or "$state/abort" exists (scripts/test.sh was stopped).
await() {
  local name=$1 pid port url waited=0
  pid=$(cat "$state/$name.pid")
  while [ ! -s "$state/$name.port" ]; do
    if [ -e "$state/abort" ]; then
      stop "$name" quiet
      return 1
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server.sh: $name exited while starting; the end of $state/$name.log:" >&2
      tail -40 "$state/$name.log" >&2
      cp "$state/$name.log" "$state/$name.failed.log" 2>/dev/null || true
      rm -f "$state/$name.pid"
      return 2
    fi
    if [ "$waited" -ge $((timeout * 5)) ]; then
      echo "server.sh: $name not ready after ${timeout}s; the end of $state/$name.log:" >&2
      tail -40 "$state/$name.log" >&2
      stop "$name" quiet
      return 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
  port=$(cat "$state/$name.port")
  url=$(url_for "$name" "$port")
  echo "$url" >"$state/$name.url"
  echo "server.sh: $name ready at $url after $((waited / 5))s" >&2
  echo "$name $url"
}

# start NAME...: resolve what is missing, then start every server not yet
# running at once (they start in parallel) and wait for each.
start() {
  local name todo=() failed=
  for name in "$@"; do
    if running "$name"; then
      echo "$name $(cat "$state/$name.url")"
    else
      stop "$name" quiet
      todo+=("$name")
    fi
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  for name in "${todo[@]}"; do prepare "$name"; done
  rm -f "$state/abort"
  for name in "${todo[@]}"; do launch "$name"; done
  local rc try
  for name in "${todo[@]}"; do
    # A launcher that dies while starting (say a port taken between
    # choosing and binding it) is started again, twice at most.
    for try in 1 2 3; do
      rc=0
      await "$name" || rc=$?
      [ "$rc" -eq 2 ] && [ "$try" -lt 3 ] && [ ! -e "$state/abort" ] || break
      echo "server.sh: starting $name again (try $((try + 1)) of 3)" >&2
      launch "$name"
    done
    [ "$rc" -eq 0 ] || failed=1
  done
  [ -z "$failed" ] || die "not every server started (their logs are in $state)"
}

stop() {
  local name=$1 quiet=${2:-} pid i
  [ -f "$state/$name.pid" ] || { [ -n "$quiet" ] || echo "server.sh: $name is not running" >&2; return 0; }
  pid=$(cat "$state/$name.pid")
  if ours "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "server.sh: $name (pid $pid) ignored SIGTERM for 30s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    [ -n "$quiet" ] || echo "server.sh: stopped $name (pid $pid)" >&2
  fi
  rm -f "$state/$name.pid" "$state/$name.port" "$state/$name.url"
  rm -rf "${state:?}/$name"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  start | prepare)
    [ $# -gt 0 ] || die "usage: $0 $cmd NAME... (opensearch, kafka, elasticsearch7)"
    for n in "$@"; do known "$n" || die "unknown server $n (opensearch, kafka, elasticsearch7)"; done
    if [ "$cmd" = start ]; then start "$@"; else for n in "$@"; do prepare "$n"; done; fi
    ;;
  stop)
    [ $# -gt 0 ] || die "usage: $0 stop NAME...|all"
    if [ "$1" = all ]; then set -- opensearch kafka elasticsearch7; fi
    for n in "$@"; do known "$n" || die "unknown server $n"; stop "$n"; done
    ;;
  status | env)
    for n in opensearch kafka elasticsearch7; do
      if running "$n"; then
        if [ "$cmd" = env ]; then
          echo "export $(envname "$n")=$(cat "$state/$n.url")"
        else
          echo "$n pid $(cat "$state/$n.pid") $(cat "$state/$n.url")"
        fi
      fi
    done
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
