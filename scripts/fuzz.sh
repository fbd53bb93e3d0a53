#!/usr/bin/env bash
# libFuzzer drivers (tests/fuzz/*_fuzz.c), built with clang in build/fuzz.
#   scripts/fuzz.sh run      each driver for FUZZ_SECONDS (default 60), then a
#                            summary: driver, runs, seconds, crashes
#   scripts/fuzz.sh regress  each driver once over its seed corpus (and any
#                            reproducers in tests/fuzz/regress/<driver>/):
#                            "fuzz: N passed, N failed" for scripts/test.sh
# FUZZ_ONLY=http_fuzz limits to one driver. New inputs go to
# build/fuzz/work/<driver> (merge the useful ones into the repo corpus by
# hand, with -merge=1); crashes to build/fuzz/artifacts/<driver>/.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
BUILD=build/fuzz
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

scripts/deps.sh fuzz || { echo "fuzz: cannot install clang / libclang-rt-14-dev" >&2; exit 1; }
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DOSB_FUZZ=ON -DOSB_WERROR=OFF >/dev/null || exit 1
cmake --build "$BUILD" -j "$(nproc)" --target fuzz_all >/dev/null || { echo "fuzz: build failed" >&2; exit 1; }

drivers=()
for f in tests/fuzz/*_fuzz.c; do
  n=$(basename "$f" .c)
  [ -n "${FUZZ_ONLY:-}" ] && [ "$n" != "$FUZZ_ONLY" ] && continue
  drivers+=("$n")
done

pass=0 fail=0
case "$mode" in
  regress)
    for n in "${drivers[@]}"; do
      dirs=(tests/fuzz/corpus/$n)
      [ -d tests/fuzz/regress/$n ] && dirs+=(tests/fuzz/regress/$n)
      log=$BUILD/$n.regress.log
      if "$BUILD/$n" -runs=0 "${dirs[@]}" >"$log" 2>&1; then
        pass=$((pass + 1)); echo "ok   $n ($(ls "${dirs[@]}" | grep -vc ':$') inputs)"
      else
        fail=$((fail + 1)); echo "FAIL $n (see $log)"; grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
      fi
    done
    echo "fuzz: $pass passed, $fail failed"
    ;;
  run)
    printf '%-20s %12s %8s %8s\n' driver runs seconds crashes > "$BUILD/summary.txt"
    for n in "${drivers[@]}"; do
      work=$BUILD/work/$n art=$BUILD/artifacts/$n
      mkdir -p "$work" "$art"
      dict=(); [ -f tests/fuzz/$n.dict ] && dict=(-dict=tests/fuzz/$n.dict)
      before=$(ls "$art" | wc -l)
      start=$(date +%s)
      # -fork keeps fuzzing past the first crash; one job, two cores are shared.
      "$BUILD/$n" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$work" tests/fuzz/corpus/$n \
        >"$BUILD/$n.log" 2>&1
      rc=$?
      secs=$(( $(date +%s) - start ))
      runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$BUILD/$n.log" | grep -Eo '[0-9]+$' | tail -1)
      crashes=$(( $(ls "$art" | wc -l) - before ))
      [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1
      printf '%-20s %12s %8s %8s\n' "$n" "${runs:-?}" "$secs" "$crashes" >> "$BUILD/summary.txt"
      [ "$crashes" -eq 0 ] && pass=$((pass + 1)) || fail=$((fail + 1))
    done
    echo "== fuzz summary (FUZZ_SECONDS=$FUZZ_SECONDS; logs and artifacts in $BUILD)"
    cat "$BUILD/summary.txt"
    [ "$fail" -eq 0 ]
    exit $?
    ;;
  *) echo "usage: $0 run|regress" >&2; exit 2 ;;
esac
[ "$fail" -eq 0 ]
