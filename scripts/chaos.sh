#!/usr/bin/env bash
# `make chaos`: fault injection and floods under load against the ASan build
# (tests/chaos/run.mjs): PostgreSQL restarted during reads and durable
# publishes (REST) and during WebSocket publishing, SIGTERM with a readiness
# window then the drain, 10 % of WebSocket subscribers stop reading, a
# stalled upstream (TTS), connection floods (fd limit, EMFILE, per-address
# limit, pings), slowloris / header / body / nesting / WebSocket-connect
# floods. Bounded: CHAOS_SECONDS (default 10) per load phase, about three
# minutes in all. CHAOS_ONLY=<name> runs one; CHAOS_P99_MS (default 10) is
# the probe's p99 bound.
# OSB_CHAOS_ISSUE8=0 leaves out the scenarios written against the issue-8
# fixes (pipelined flood without reading, 1013 seen by a paused client).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/asan}
export OSB_BIN="$PWD/$BUILD/osbackend"
export OSB_PG_SCRIPT="$PWD/scripts/pg.sh"
export PGDIR=${PGDIR:-/tmp/osb-pg-chaos-$$}
export PGPORT=${PGPORT:-55434}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
[ -x "$OSB_BIN" ] || { echo "chaos: $OSB_BIN missing (make build-test)" >&2; exit 1; }
if [ ! -d node_modules/ws ]; then npm ci --no-audit --no-fund --loglevel=error >/dev/null || exit 1; fi
OSB_TEST_PG_URL=$(scripts/pg.sh start) || { echo "chaos: could not start PostgreSQL" >&2; exit 1; }
export OSB_TEST_PG_URL
trap 'scripts/pg.sh destroy' EXIT
node tests/chaos/run.mjs
