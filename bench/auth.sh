#!/usr/bin/env bash
# bench/auth.sh: the auth benchmark (issue 5, item 8), self-contained.
#
#  1. token verification cost: an authenticated route that needs no database
#     (GET /api/auth/session with a Bearer JWT: HMAC-SHA256 verify + JSON)
#     against GET /health, same connections and duration;
#  2. Argon2id isolation: /health latency (p50/p99) on the event loop alone,
#     then while 20 clients sign in concurrently and continuously (Argon2id
#     on the threadpool); the p99s should match.
#
# Usage: bench/auth.sh                    (builds build/release if needed)
#        OSB_BIN=path/to/osbackend bench/auth.sh
# Env: BENCH_SECONDS (default 5), BENCH_CONNS (default 16), BENCH_LOGINS (20).
# Also callable from bench/run.sh: `source bench/auth.sh; section_auth`.
# Results: stdout, and bench/results/auth.txt.

section_auth() {
  local root bin secs conns logins dir port pid log out
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin=${OSB_BIN:-$root/build/release/osbackend}
  secs=${BENCH_SECONDS:-5}
  conns=${BENCH_CONNS:-16}
  logins=${BENCH_LOGINS:-20}
  out="$root/bench/results/auth.txt"
  mkdir -p "$root/bench/results"

  if [ ! -x "$bin" ]; then
    cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DOSB_SANITIZE=OFF >/dev/null &&
      cmake --build "$root/build/release" -j2 --target osbackend >/dev/null || { echo "auth bench: build failed"; return 1; }
  fi
  for t in wrk curl node; do
    command -v $t >/dev/null || { echo "auth bench: $t is required"; return 1; }
  done

  dir=$(mktemp -d /tmp/osb-bench-auth-XXXXXX)
  log="$dir/server.log"
  # Throwaway key material, generated now; never printed.
  PORT=0 HOST=127.0.0.1 SQLITE_PATH="$dir/osb.db" OSB_ENV_FILE="$dir/none.env" \
    JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
    COOKIE_SECURE=0 LOG_LEVEL=warn RATE_LIMIT_RPS=10000000 RATE_LIMIT_BURST=10000000 \
    "$bin" 2>"$log" &
  pid=$!
  port=""
  for _ in $(seq 1 100); do
    port=$(grep -o '"port":[0-9]*' "$log" 2>/dev/null | head -1 | cut -d: -f2)
    [ -n "$port" ] && break
    # LOG_LEVEL=warn hides the listening line: ask the kernel instead.
    port=$(ss -ltnp 2>/dev/null | awk -v p="pid=$pid," '$0 ~ p {sub(/.*:/, "", $4); print $4; exit}')
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "auth bench: server did not start"; cat "$log"; kill "$pid" 2>/dev/null; rm -rf "$dir"; return 1
  fi
  local base="http://127.0.0.1:$port"

  # Two accounts: one for the token, one the login storm signs in to.
  local email="bench-$RANDOM$RANDOM@example.test" pw
  pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local token
  token=$(curl -s -X POST "$base/api/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$pw\"}" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{process.stdout.write(JSON.parse(s).access_token||"")}catch{}})')
  if [ -z "$token" ]; then
    echo "auth bench: could not register"; kill "$pid"; wait "$pid" 2>/dev/null; rm -rf "$dir"; return 1
  fi

  # wrk summary: "<req/s> <p50> <p99>" with latencies in ms.
  run_wrk() {
    wrk -t1 -c"$1" -d"${secs}s" --latency "${@:3}" "$base$2" 2>&1 | awk '
      function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 } if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v }
      /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
      /Non-2xx/ { bad = $NF }
      END { printf "%.0f %.3f %.3f %s\n", rps, p50, p99, bad ? bad : 0 }'
  }

  local health session me
  health=$(run_wrk "$conns" /health)
  session=$(run_wrk "$conns" /api/auth/session -H "Authorization: Bearer $token")
  me=$(run_wrk "$conns" /api/auth/me -H "Authorization: Bearer $token")

  # /health alone with few connections (the latency probe), then under the
  # login storm: `logins` clients each signing in back to back.
  local probe_c=4 alone storm
  alone=$(run_wrk "$probe_c" /health)
  local stop="$dir/stop" count="$dir/logins"
  : >"$count"
  for i in $(seq 1 "$logins"); do
    (
      while [ ! -e "$stop" ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/api/auth/login" \
          -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"$pw\"}")
        echo "$code" >>"$count"
      done
    ) &
  done
  sleep 1   # let the threadpool fill up
  storm=$(run_wrk "$probe_c" /health)
  touch "$stop"
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null
  local ok total
  ok=$(grep -c '^200$' "$count" || true)
  total=$(wc -l <"$count")

  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -rf "$dir"

  {
    echo "== auth benchmark ($secs s per run, wrk -t1)"
    read -r r a b n <<<"$health";  printf '  GET /health                      c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms\n' "$conns" "$r" "$a" "$b"
    read -r r a b n <<<"$session"; printf '  GET /api/auth/session (JWT)     c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms  non-2xx %s\n' "$conns" "$r" "$a" "$b" "$n"
    read -r r a b n <<<"$me";      printf '  GET /api/auth/me (JWT + DB)     c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms  non-2xx %s\n' "$conns" "$r" "$a" "$b" "$n"
    read -r r a b n <<<"$alone";   printf '  GET /health, no login load      c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms\n' "$probe_c" "$r" "$a" "$b"
    read -r r a b n <<<"$storm";   printf '  GET /health, %2s logins running  c=%-3s %8s req/s  p50 %7s ms  p99 %7s ms\n' "$logins" "$probe_c" "$r" "$a" "$b"
    printf '  logins completed during the storm: %s (%s answered 200)\n' "$total" "$ok"
  } | tee "$out"
}

# Run directly: do the section. Sourced: only define it.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  section_auth
fi
