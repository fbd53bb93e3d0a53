#!/usr/bin/env bash
# The test suite behind `make test` (the ASan/UBSan build must exist):
#  1. cmocka unit tests through ctest;
#  2. the libFuzzer drivers replayed over their corpora (build/fuzz, clang;
#     regression mode: every committed input must still pass);
#  3. black-box tests (Node's test runner) against the real binary, a real
#     PostgreSQL cluster started here and torn down after, real WebSocket
#     clients and Debian's Chromium;
# then one summary line "N passed, N failed". Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/asan}
export OSB_BIN="$PWD/$BUILD/osbackend"
export OSB_TOOLS_DIR="$PWD/$BUILD"
export OSB_PG_SCRIPT="$PWD/scripts/pg.sh"
export PGDIR=${PGDIR:-/tmp/osb-pg-test-$$}
export PGPORT=${PGPORT:-55433}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

unit_pass=0 unit_fail=0 bb_pass=0 bb_fail=0 fz_pass=0 fz_fail=0

echo "== PostgreSQL"
if OSB_TEST_PG_URL=$(scripts/pg.sh start); then
  export OSB_TEST_PG_URL
  echo "started throwaway cluster at $PGDIR"
else
  echo "could not start PostgreSQL"; exit 1
fi
trap 'scripts/pg.sh destroy' EXIT

echo "== unit tests (ctest)"
ctest_out=$(ctest --test-dir "$BUILD" --output-on-failure -j1 2>&1)
ctest_rc=$?
echo "$ctest_out" | tail -n 40
if summary=$(echo "$ctest_out" | grep -E '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+'); then
  total=$(echo "$summary" | sed -E 's/.* out of ([0-9]+).*/\1/')
  unit_fail=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests failed.*/\1/')
  unit_pass=$((total - unit_fail))
elif [ $ctest_rc -ne 0 ]; then
  unit_fail=1
fi

echo "== fuzz regressions (libFuzzer, corpus replay)"
fz_out=$(scripts/fuzz.sh regress 2>&1)
fz_rc=$?
echo "$fz_out" | tail -n 20
if summary=$(echo "$fz_out" | grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed'); then
  fz_pass=$(echo "$summary" | sed -E 's/fuzz: ([0-9]+) passed.*/\1/')
  fz_fail=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
fi
[ $fz_rc -ne 0 ] && [ "$fz_fail" -eq 0 ] && fz_fail=1

echo "== npm packages"
if [ ! -d node_modules/ws ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || { echo "npm ci failed"; exit 1; }
fi


echo "== black-box tests (node --test)"
files=$(ls tests/integration/*.test.mjs 2>/dev/null | sort)
bb_out=$(mktemp)
if [ -n "$files" ]; then
  node --test --test-concurrency=1 --test-timeout=180000 --test-reporter=spec $files 2>&1 | tee "$bb_out"
  bb_rc=${PIPESTATUS[0]}
  bb_pass=$(grep -E '^ℹ pass [0-9]+' "$bb_out" | awk '{print $3}')
  bb_fail=$(grep -E '^ℹ fail [0-9]+' "$bb_out" | awk '{print $3}')
  bb_pass=${bb_pass:-0}; bb_fail=${bb_fail:-0}
  [ $bb_rc -ne 0 ] && [ "$bb_fail" -eq 0 ] && bb_fail=1
fi
rm -f "$bb_out"

passed=$((unit_pass + fz_pass + bb_pass))
failed=$((unit_fail + fz_fail + bb_fail))
echo "unit: $unit_pass passed, $unit_fail failed; fuzz: $fz_pass passed, $fz_fail failed; black-box: $bb_pass passed, $bb_fail failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
