#!/usr/bin/env bash
# `make soak`: mixed traffic for SOAK_SECONDS (default 600) against the
# ASan/LSan build on a throwaway PostgreSQL (tests/chaos/soak.mjs): RSS and
# fd slopes after warm-up, lost acknowledged messages, sanitizer reports.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/asan}
export OSB_BIN="$PWD/$BUILD/osbackend"
export PGDIR=${PGDIR:-/tmp/osb-pg-soak-$$}
export PGPORT=${PGPORT:-55435}
[ -x "$OSB_BIN" ] || { echo "soak: $OSB_BIN missing (make build-test)" >&2; exit 1; }
if [ ! -d node_modules/ws ]; then npm ci --no-audit --no-fund --loglevel=error >/dev/null || exit 1; fi
OSB_TEST_PG_URL=$(scripts/pg.sh start) || { echo "soak: could not start PostgreSQL" >&2; exit 1; }
export OSB_TEST_PG_URL
trap 'scripts/pg.sh destroy' EXIT
node tests/chaos/soak.mjs
