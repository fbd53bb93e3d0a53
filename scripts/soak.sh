#!/usr/bin/env bash
# `make soak`: mixed traffic for SOAK_SECONDS (default 600) on a throwaway
# PostgreSQL (tests/chaos/soak.mjs), against the ASan/LSan build and the
# release build at the same time (one database each): sanitizer reports,
# lost acknowledged messages, heap and fd slopes in both; the RSS slope is
# checked on the release build, where RSS is the program's memory and not
# the sanitizer allocator's (docs/reliability.md §5).
# SOAK_BUILDS="build/asan" (or BUILD=build/asan) runs one build only.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILDS=${SOAK_BUILDS:-${BUILD:-build/asan build/release}}
export PGDIR=${PGDIR:-/tmp/osb-pg-soak-$$}
export PGPORT=${PGPORT:-55435}
for b in $BUILDS; do
  [ -x "$b/osbackend" ] || { echo "soak: $b/osbackend missing (make build-test / make build)" >&2; exit 1; }
done
if [ ! -d node_modules/ws ]; then npm ci --no-audit --no-fund --loglevel=error >/dev/null || exit 1; fi
url=$(scripts/pg.sh start) || { echo "soak: could not start PostgreSQL" >&2; exit 1; }
out=$(mktemp -d)
trap 'scripts/pg.sh destroy; rm -rf "$out"' EXIT
i=0 pids=()
for b in $BUILDS; do
  i=$((i + 1))
  db="${url%/*}/soak$i"
  psql "$url" -XAtq -c "CREATE DATABASE soak$i" || exit 1
  OSB_BIN="$PWD/$b/osbackend" OSB_TEST_PG_URL="$db" node tests/chaos/soak.mjs >"$out/$i" 2>&1 &
  pids+=($!)
  sleep 2   # staggered starts: migrations and first sign-ins not in lockstep
done
rc=0 i=0
for p in "${pids[@]}"; do
  i=$((i + 1))
  wait "$p" || rc=1
  cat "$out/$i"
done
[ "$rc" = 0 ] && echo "soak: every build passed" || echo "soak: FAILED"
exit "$rc"
