# Sourced by scripts/test.sh: the real servers of one test run.
#   servers_start NAME...  start them in the background (resolving jars first
#                          if needed) while the script goes on; sets the trap
#                          that stops them on EXIT, INT and TERM
#   servers_wait           wait until they are ready and export their
#                          addresses (SIDELOG_OPENSEARCH_URL, ...)
# Each run has its own state folder; it is removed after a passing run and
# kept, with each server's log, after a failing one.

servers_start() {
  SIDELOG_SERVERS_STATE=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-servers-run.XXXXXX")
  export SIDELOG_SERVERS_STATE
  # A test whose server is missing fails instead of skipping.
  export SIDELOG_REQUIRE_SERVERS=1
  trap servers_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  echo "== starting test servers: $* (state: $SIDELOG_SERVERS_STATE)"
  # Its own session: a Ctrl-C reaches it only through servers_exit.
  setsid bash scripts/servers/server.sh start "$@" >"$SIDELOG_SERVERS_STATE/start.out" 2>&1 </dev/null &
  servers_starter=$!
}

servers_wait() {
  echo "== waiting for test servers"
  if ! wait "$servers_starter"; then
    servers_starter=
    cat "$SIDELOG_SERVERS_STATE/start.out" >&2
    echo "scripts/test.sh: the test servers did not start" >&2
    exit 1
  fi
  servers_starter=
  grep -v '^[a-z0-9]* [a-z0-9:/.]*$' "$SIDELOG_SERVERS_STATE/start.out" || true
  eval "$(bash scripts/servers/server.sh env)"
}

servers_exit() {
  local rc=$? i name
  trap - EXIT INT TERM
  if [ -n "${servers_starter:-}" ] && kill -0 "$servers_starter" 2>/dev/null; then
    # Still starting: ask it to stop what it launched, then end it (and its
    # Maven, if it is still resolving) by its process group.
    touch "$SIDELOG_SERVERS_STATE/abort"
    for i in $(seq 1 50); do
      kill -0 "$servers_starter" 2>/dev/null || break
      sleep 0.2
    done
    kill -TERM -- "-$servers_starter" 2>/dev/null || true
  fi
  bash scripts/servers/server.sh stop all >/dev/null 2>&1 || true
  if [ "$rc" -eq 0 ]; then
    rm -rf "$SIDELOG_SERVERS_STATE"
  else
    for name in opensearch kafka elasticsearch7; do
      if [ -s "$SIDELOG_SERVERS_STATE/$name.log" ]; then
        echo "== the end of $name's log ($SIDELOG_SERVERS_STATE/$name.log)" >&2
        tail -25 "$SIDELOG_SERVERS_STATE/$name.log" >&2
      fi
    done
    echo "scripts/test.sh: server logs kept in $SIDELOG_SERVERS_STATE" >&2
  fi
  exit "$rc"
}
