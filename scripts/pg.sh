#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and benchmarks.
#   scripts/pg.sh start   → init (once) and start; prints the connection URL
#   scripts/pg.sh stop | restart | status | url | destroy
# PGDIR (default /tmp/osb-pg) holds the cluster, PGPORT (default 55432) its port.
# PostgreSQL refuses to run as root, so the server runs as the postgres user.
set -euo pipefail
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PGDIR=${PGDIR:-/tmp/osb-pg}
PGPORT=${PGPORT:-55432}
DATA="$PGDIR/data"
URL="postgres://osb@127.0.0.1:$PGPORT/osb"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

init() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  mkdir -p "$PGDIR"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDIR"
  as_pg "$PGBIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDIR'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
log_min_messages = warning
CONF
}

start() {
  init
  if ! as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 30 start >/dev/null
  fi
  as_pg "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -qtAc \
    "SELECT 1 FROM pg_roles WHERE rolname='osb'" | grep -q 1 ||
    as_pg "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -qc "CREATE ROLE osb LOGIN SUPERUSER" >/dev/null
  as_pg "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname='osb'" | grep -q 1 ||
    as_pg "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -qc "CREATE DATABASE osb OWNER osb" >/dev/null
  echo "$URL"
}

case "${1:-}" in
  start) start ;;
  stop) as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true ;;
  restart) as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 30 start >/dev/null ;;
  status) as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 ;;
  url) echo "$URL" ;;
  destroy) as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$PGDIR" ;;
  *) echo "usage: $0 start|stop|restart|status|url|destroy" >&2; exit 2 ;;
esac
