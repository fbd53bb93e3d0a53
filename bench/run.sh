#!/usr/bin/env bash
# bench/run.sh: the project's benchmark (what `make bench` runs).
#
# Measures the release build (build/release: osbackend, wsload) against the
# uWebSockets reference server (../shared/anchors/uws/uws-anchor, "uws") and
# the Node.js baseline (express + ws + pg) in the same run, on the same
# machine, with interleaved repetitions (osbackend, uws, baseline, osbackend,
# uws, ...), and prints each server's figure and osbackend's ratio to each,
# then a summary table. The machine is shared and its load varies: only the
# ratios within one run mean anything, not the absolute figures. It starts and stops everything itself:
# a throwaway PostgreSQL cluster, the Node baseline, osbackend. Raw outputs
# go to bench/results/<timestamp>/ (git-ignored). See docs/benchmarks.md.
#
# Sections: health (wrk on GET /health, three servers), db (procedure by id: uncached,
# cached, baseline, pgbench ceiling), auth (JWT verification vs /health;
# /health latency while clients sign in with Argon2id), ws (WebSocket
# fan-out with wsload, three servers), idle (RSS per idle WebSocket, three
# servers), apps (Market Data PUT → event at 1,000 subscribers,
# POST /api/notifications → delivery at 1,000 users, on SQLite and
# PostgreSQL), upstream (500 concurrent text-to-speech calls through the
# libcurl-multi client to a fake ElevenLabs; breaker overhead), cluster (2
# instances on the PostgreSQL bus, 1,000 subscribers each, 200 msg/s on one:
# same- vs cross-instance delivery; WORKERS=2 vs 1), chat (200 concurrent
# conversations against a fake LLM streaming 50 tokens/s). The single-instance
# sections run with CLUSTER_BUS=local (one process needs no bus).
#
# Knobs (environment): BENCH_SECTIONS ("health db auth ws idle apps upstream chat cluster"), BENCH_APPS_DURATION (10),
# BENCH_CHAT_CONC (200), BENCH_CHAT_DURATION (10),
# BENCH_CLUSTER_DURATION (20), BENCH_UPSTREAM_CONC (500), BENCH_UPSTREAM_DELAY_MS (50), BENCH_UPSTREAM_DURATION (10),
# BENCH_AUTH_LOGINS (20), BENCH_WS_MATRIX ("1000:200 10000:50", conns:rate pairs), BENCH_WS_DURATION (20),
# BENCH_WS_THREADS (1), BENCH_WS_RUNS (3), BENCH_HEALTH_RUNS (3), BENCH_DB_RUNS (3),
# BENCH_IDLE_CONNS (10000), BENCH_IDLE_RUNS (3), BENCH_SERVERS ("osbackend
# uws baseline": who runs in the three-server sections), BENCH_BUILD
# (build/release), NODE_BASELINE_DIR (/work/shared/anchors/node-baseline),
# UWS_BIN (/work/shared/anchors/uws/uws-anchor), BENCH_PORT_BASE (55490:
# PostgreSQL on it, osbackend +1, baseline +2, uncached osbackend +3, apps
# and upstream +4, upstream's fake ElevenLabs and cluster +5..+7, uws +9,
# chat osbackend +10, its fake LLM +11).
#
# Exit status: non-zero if PostgreSQL or a server failed to start (or a
# server died during the run). A single
# failed measurement prints "failed" and the run goes on.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD:-$ROOT/build/release}
OSB_BIN=$BUILD/osbackend
WSLOAD=$BUILD/wsload
NODE_DIR=${NODE_BASELINE_DIR:-/work/shared/anchors/node-baseline}
SECTIONS=${BENCH_SECTIONS:-health db auth ws idle apps upstream chat cluster}
SERVERS=${BENCH_SERVERS:-osbackend uws baseline}
UWS_BIN=${UWS_BIN:-/work/shared/anchors/uws/uws-anchor}
WS_RUNS=${BENCH_WS_RUNS:-3}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_RUNS=${BENCH_IDLE_RUNS:-3}
APPS_DURATION=${BENCH_APPS_DURATION:-10}
AUTH_LOGINS=${BENCH_AUTH_LOGINS:-20}
WS_MATRIX=${BENCH_WS_MATRIX:-1000:200 10000:50}
WS_DURATION=${BENCH_WS_DURATION:-20}
WS_THREADS=${BENCH_WS_THREADS:-1}
HEALTH_RUNS=${BENCH_HEALTH_RUNS:-3}
CLUSTER_DURATION=${BENCH_CLUSTER_DURATION:-20}
BASE=${BENCH_PORT_BASE:-55490}
PGPORT_BENCH=$BASE
OSB_PORT=$((BASE + 1))
NODE_PORT=$((BASE + 2))
OSB_NC_PORT=$((BASE + 3))
UWS_PORT=$((BASE + 9))
export PGDIR=${BENCH_PGDIR:-/tmp/osb-pg-bench} PGPORT=$PGPORT_BENCH
PG=$ROOT/scripts/pg.sh

STAMP=$(date +%Y%m%d-%H%M%S)
RES=$ROOT/bench/results/$STAMP
mkdir -p "$RES"

# ---------------------------------------------------------------- helpers
say() { printf '%s\n' "$*"; }
hr() { say ""; say "== $* =="; }
randhex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

START_FAILED=0
SERVER_DIED=0
declare -A PIDS=()
SUMMARY=()   # "metric|osbackend|uws|baseline|ratio to uws|ratio to baseline|better"
NOTES=()     # free-form lines printed under the summary table

# ratio A B: A/B with two decimals, or "-" if either is not a positive number.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0 || a + 0 == 0) { print "-"; exit }
    printf "%.2f", a / b }'
}
median() { printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "failed" }'; }
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v ~ /^-?[0-9.]+$/) printf "%.*f", d, v; else printf "%s", v }'; }

row() { # row METRIC OSB NODE BETTER(higher|lower) [DECIMALS]: no uws figure
  row3 "$1" "$2" n/a "$3" "$4" "${5:-0}"
}

row3() { # row3 METRIC OSB UWS NODE BETTER(higher|lower) [DECIMALS]
  local ru rn o u n d=${6:-0}
  o=$(fmt "$2" "$d"); u=$(fmt "$3" "$d"); n=$(fmt "$4" "$d")
  ru=$(ratio "$2" "$3"); rn=$(ratio "$2" "$4")
  printf '  %-40s osbackend %-10s uws %-10s baseline %-10s ÷uws %-5s ÷baseline %-5s (%s is better)\n' \
    "$1" "$o" "$u" "$n" "$ru" "$rn" "$5"
  SUMMARY+=("$1|$o|$u|$n|$ru|$rn|$5")
}

stop_pid() { # stop_pid NAME: SIGTERM, then SIGKILL after 5 s
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  unset "PIDS[$1]"
}

cleanup() {
  for n in "${!PIDS[@]}"; do stop_pid "$n"; done
  "$PG" destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" 2>/dev/null || true; }

# wait_listen NAME PORT: until the port answers HTTP (any status) or the process dies.
wait_listen() {
  local pid=${PIDS[$1]} c
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || return 1
    c=$(http_code "http://127.0.0.1:$2/health")
    [ -n "$c" ] && [ "$c" != "000" ] && return 0
    sleep 0.1
  done
  return 1
}

# exit_note NAME: sets NOTE to ", exited with status N" or ", not listening after 20 s"
# (not in a $(subshell): only this shell can wait for its children).
exit_note() {
  local pid=${PIDS[$1]} rc
  if kill -0 "$pid" 2>/dev/null; then NOTE=", not listening after 20 s"; return; fi
  wait "$pid" 2>/dev/null; rc=$?
  NOTE=", exited with status $rc"
}

# start_osb NAME PORT [VAR=value...]: osbackend against database osb.
start_osb() {
  local name=$1 port=$2; shift 2
  if [ ! -x "$OSB_BIN" ]; then say "  $name: $OSB_BIN not built"; START_FAILED=1; return 1; fi
  (cd "$RES" && exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    PORT="$port" HOST=127.0.0.1 DATABASE_URL="$OSB_DB_URL" JWT_SECRET="$JWT_SECRET" \
    SERVICE_API_KEY="$SERVICE_API_KEY" OSB_ENV_FILE="$RES/none.env" SQLITE_PATH="$RES/osb.db" \
    LOG_LEVEL=warn LOG_FORMAT=json RATE_LIMIT_RPS=1000000 RATE_LIMIT_BURST=1000000 MAX_CONNECTIONS_PER_IP=0 \
    CLUSTER_BUS=local "$@" "$OSB_BIN" >"$RES/$name.log" 2>&1) &
  PIDS[$name]=$!
  if ! wait_listen "$name" "$port"; then
    exit_note "$name"
    say "  $name: failed to start$NOTE (see $RES/$name.log)"
    tail -n 5 "$RES/$name.log" | sed 's/^/    /'
    stop_pid "$name"
    START_FAILED=1
    return 1
  fi
  say "  $name: pid ${PIDS[$name]} on port $port"
}

start_node() {
  if [ ! -f "$NODE_DIR/server.js" ]; then say "  baseline: $NODE_DIR/server.js not found"; START_FAILED=1; return 1; fi
  (cd "$RES" && exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" PORT="$NODE_PORT" HOST=127.0.0.1 \
    DATABASE_URL="$NODE_DB_URL" SERVICE_API_KEY="$SERVICE_API_KEY" \
    node "$NODE_DIR/server.js" >"$RES/baseline.log" 2>&1) &
  PIDS[baseline]=$!
  if ! wait_listen baseline "$NODE_PORT"; then
    exit_note baseline
    say "  baseline: failed to start$NOTE (see $RES/baseline.log)"
    tail -n 5 "$RES/baseline.log" | sed 's/^/    /'
    stop_pid baseline
    START_FAILED=1
    return 1
  fi
  say "  baseline: pid ${PIDS[baseline]} on port $NODE_PORT"
}

# start_uws: the uWebSockets reference server, run in place (its folder is
# read-only; it writes nothing). It has no rate limit and no per-address
# connection limit to turn off.
start_uws() {
  if [ ! -x "$UWS_BIN" ]; then say "  uws: $UWS_BIN not found"; START_FAILED=1; return 1; fi
  (cd "$RES" && exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" PORT="$UWS_PORT" HOST=127.0.0.1 \
    SERVICE_API_KEY="$SERVICE_API_KEY" "$UWS_BIN" >"$RES/uws.log" 2>&1) &
  PIDS[uws]=$!
  if ! wait_listen uws "$UWS_PORT"; then
    exit_note uws
    say "  uws: failed to start$NOTE (see $RES/uws.log)"
    tail -n 5 "$RES/uws.log" | sed 's/^/    /'
    stop_pid uws
    START_FAILED=1
    return 1
  fi
  say "  uws: pid ${PIDS[uws]} on port $UWS_PORT"
}

port_of() { case "$1" in osbackend) echo "$OSB_PORT";; uws) echo "$UWS_PORT";; baseline) echo "$NODE_PORT";; esac; }
serving() { case " $SERVERS " in *" $1 "*) return 0;; *) return 1;; esac; }

# restart NAME: a fresh process (RSS figures are not skewed by heap left
# over from an earlier measurement; Node's GC would hand memory back mid-run).
restart() {
  serving "$1" || return 0
  stop_pid "$1"
  case "$1" in
    osbackend) start_osb osbackend "$OSB_PORT" >/dev/null ;;
    uws) start_uws >/dev/null ;;
    baseline) start_node >/dev/null ;;
  esac
}

# check_servers: report a server that died during the run (once) and fail the run.
check_servers() {
  local n
  for n in "${!PIDS[@]}"; do
    kill -0 "${PIDS[$n]}" 2>/dev/null && continue
    exit_note "$n"
    say "  !! $n is gone$NOTE (see $RES/$n.log)"
    unset "PIDS[$n]"
    SERVER_DIED=1
  done
}

up() { [ -n "${PIDS[$1]:-}" ] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# wrk_run OUTFILE URL [SCRIPT] [DURATION]: prints "rps p99_ms non2xx errors" or "failed".
wrk_run() {
  local out=$1 url=$2 script=${3:-} dur=${4:-10s}
  local args=(-t2 -c64 -d"$dur" --timeout 5s --latency)
  [ -n "$script" ] && args+=(-s "$script")
  if ! timeout 60 wrk "${args[@]}" "$url" >"$out" 2>&1; then echo failed; return; fi
  awk '
    /^Requests\/sec:/ { rps = $2 }
    /^ +99%/ { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
               p99 = (u == "us") ? v / 1000 : (u == "ms") ? v : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v }
    /Non-2xx or 3xx responses:/ { non = $NF }
    /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
    END { if (rps == "") print "failed"; else printf "%s %s %d %d\n", rps, p99, non, err }' "$out"
}

# --------------------------------------------------------------- sections

# CPU time (user+system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

section_health() {
  hr "a. GET /health (wrk -t2 -c64 -d10s, $HEALTH_RUNS interleaved runs per server, median)"
  local who port r line c0 c1 t0 t1 eff hz
  hz=$(getconf CLK_TCK)
  declare -A H_RPS H_P99 H_EFF
  declare -A L_RPS L_P99 L_EFF   # space-separated per-run figures
  local live=()
  for who in osbackend uws baseline; do
    serving "$who" || { H_RPS[$who]="n/a"; H_P99[$who]="n/a"; H_EFF[$who]="n/a"; continue; }
    port=$(port_of "$who")
    if ! up "$who"; then H_RPS[$who]="n/a"; H_P99[$who]="n/a"; H_EFF[$who]="n/a"; say "  $who: n/a: server not running"; continue; fi
    if [ "$(http_code "http://127.0.0.1:$port/health")" != 200 ]; then
      H_RPS[$who]="n/a"; H_P99[$who]="n/a"; H_EFF[$who]="n/a"; say "  $who: n/a: /health does not answer 200"; continue
    fi
    live+=("$who")
  done
  # Interleaved (osbackend, uws, baseline, osbackend, ...): the machine's
  # load drifts, and each server sees the same drift.
  for r in $(seq "$HEALTH_RUNS"); do
    for who in "${live[@]}"; do
      port=$(port_of "$who")
      # The server's own CPU during the run: on 2 shared cores wrk's two
      # threads take much of the machine, so req/s alone can be bounded by
      # the load generator; req/s per server CPU-second is not.
      c0=$(cpu_ticks "${PIDS[$who]}"); t0=$(date +%s.%N)
      line=$(wrk_run "$RES/health-$who-$r.txt" "http://127.0.0.1:$port/health")
      c1=$(cpu_ticks "${PIDS[$who]}"); t1=$(date +%s.%N)
      if [ "$line" = failed ]; then say "  $who run $r: failed"; continue; fi
      set -- $line
      eff=$(awk -v q="$1" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN {
        u = (c1 - c0) / hz / (t1 - t0); if (u > 0) printf "%.0f %.2f", q / u, u; else print "n/a n/a" }')
      say "  $who run $r: $line; server CPU $(echo "$eff" | cut -d' ' -f2) cores, $(echo "$eff" | cut -d' ' -f1) req per server CPU-second"
      if [ "$3" != 0 ] || [ "$4" != 0 ]; then say "    ($3 non-2xx, $4 socket errors)"; fi
      L_RPS[$who]+=" $1"; L_P99[$who]+=" $2"; L_EFF[$who]+=" $(echo "$eff" | cut -d' ' -f1)"
    done
  done
  for who in "${live[@]}"; do
    H_RPS[$who]=$(median ${L_RPS[$who]:-}); H_P99[$who]=$(median ${L_P99[$who]:-}); H_EFF[$who]=$(median ${L_EFF[$who]:-})
  done
  row3 "/health req/s" "${H_RPS[osbackend]}" "${H_RPS[uws]}" "${H_RPS[baseline]}" higher
  row3 "/health p99 ms" "${H_P99[osbackend]}" "${H_P99[uws]}" "${H_P99[baseline]}" lower 2
  row3 "/health req per server CPU-second" "${H_EFF[osbackend]}" "${H_EFF[uws]}" "${H_EFF[baseline]}" higher
}

# proc_measure NAME PORT WARMUP: prints "rps p99 non2xx errors", "n/a: ..." or "failed".
proc_measure() {
  local name=$1 port=$2 warm=$3 code line
  local url="http://127.0.0.1:$port" lua="$ROOT/bench/wrk/procedures.lua"
  code=$(http_code "$url/api/market/procedures/1")
  if [ "$code" = 404 ]; then echo "n/a: route not available"; return; fi
  if [ "$code" != 200 ]; then echo "failed: GET /api/market/procedures/1 answered ${code:-nothing}"; return; fi
  [ "$warm" != 0 ] && wrk_run "$RES/proc-$name-warmup.txt" "$url" "$lua" "$warm" >/dev/null
  local pid=${PIDS[$name]:-} c0 c1 p0 p1 t0 t1
  c0=$(cpu_ticks "${pid:-0}"); p0=$(pg_cpu_ticks); t0=$(date +%s.%N)
  line=$(wrk_run "$RES/proc-$name.txt" "$url" "$lua")
  c1=$(cpu_ticks "${pid:-0}"); p1=$(pg_cpu_ticks); t1=$(date +%s.%N)
  echo "$c0 $c1 $p0 $p1 $t0 $t1" >"$RES/proc-$name.cpu"
  echo "$line"
}

# CPU ticks (user + system) of the bench PostgreSQL: the postmaster with
# its reaped children (backends that exited) plus the live children.
pg_cpu_ticks() {
  local pm
  pm=$(head -n 1 "$PGDIR/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$pm" '{ split($0, a, ") "); split(a[2], f, " ")
    if ($1 == p) t += f[12] + f[13] + f[14] + f[15]; else if (f[2] == p) t += f[12] + f[13] } END { print t + 0 }'
}

# cpu_per_op FILE RATE: "server_us pg_us" per request (or query) at RATE/s,
# from a proc-*.cpu file written around the measured run.
cpu_per_op() {
  [ -f "$1" ] || { echo "n/a n/a"; return; }
  awk -v r="$2" -v hz="$(getconf CLK_TCK)" '{ el = $6 - $5; n = r * el
    if (n <= 0 || r !~ /^[0-9.]+$/) { print "n/a n/a"; exit }
    printf "%.1f %.1f\n", ($2 - $1) / hz * 1e6 / n, ($4 - $3) / hz * 1e6 / n }' "$1"
}

DB_RUNS=${BENCH_DB_RUNS:-3}

# pgbench_run N: one pgbench -S run (the ceiling), PostgreSQL's CPU around
# it in proc-pgbench-N.cpu; prints its tps or "failed".
pgbench_run() {
  local p0 p1 t0 t1 tps
  p0=$(pg_cpu_ticks); t0=$(date +%s.%N)
  if ! timeout 60 pgbench -n -S -M prepared -c 20 -j 2 -T 10 "$PGB_URL" >"$RES/pgbench-$1.txt" 2>&1; then
    echo failed; return
  fi
  p1=$(pg_cpu_ticks); t1=$(date +%s.%N)
  echo "0 0 $p0 $p1 $t0 $t1" >"$RES/proc-pgbench-$1.cpu"
  tps=$(awk '/^tps = / { print $3; exit }' "$RES/pgbench-$1.txt")
  echo "${tps:-failed}"
}

section_db() {
  hr "b. GET /api/market/procedures/:id, random ids 1..10000 (wrk -t2 -c64 -d10s); uncached and pgbench interleaved, $DB_RUNS runs each"
  local nc cached node r1 r2 r3 tps r line cu cpg pu
  local l_nc="" l_tps="" l_p99="" l_cu="" l_cp="" l_pu="" l_ratio=""
  first() { case "$1" in [0-9]*) set -- $1; echo "$1";; n/a*) echo "n/a";; *) echo failed;; esac; }
  p99of() { case "$1" in [0-9]*) set -- $1; echo "$2";; n/a*) echo "n/a";; *) echo failed;; esac; }
  # The database's own ceiling: pgbench select-only on the same server.
  local pgb_ok=0
  if psql "$PG_ADMIN_URL" -qc "CREATE DATABASE pgbench" >/dev/null 2>"$RES/pgbench-init.txt" &&
     timeout 120 pgbench -i -s 10 -q "$PGB_URL" >>"$RES/pgbench-init.txt" 2>&1; then pgb_ok=1; fi
  # Uncached: a second osbackend with QUERY_CACHE_MB=0, only for this row,
  # measured in turn with pgbench (uncached, pgbench, uncached, ...): the
  # machine's load drifts, and a ratio of two runs minutes apart is the
  # drift as much as the servers.
  nc="n/a: server failed to start"
  if start_osb osbackend-nocache "$OSB_NC_PORT" QUERY_CACHE_MB=0; then
    nc=$(proc_measure osbackend-nocache "$OSB_NC_PORT" 3s)
    case "$nc" in
      [0-9]*)
        for r in $(seq "$DB_RUNS"); do
          if [ "$r" -gt 1 ]; then line=$(proc_measure osbackend-nocache "$OSB_NC_PORT" 0); else line=$nc; fi
          cp "$RES/proc-osbackend-nocache.cpu" "$RES/proc-osbackend-nocache-$r.cpu" 2>/dev/null
          cp "$RES/proc-osbackend-nocache.txt" "$RES/proc-osbackend-nocache-$r.txt" 2>/dev/null
          tps=failed
          [ "$pgb_ok" = 1 ] && tps=$(pgbench_run "$r")
          read -r cu cpg < <(cpu_per_op "$RES/proc-osbackend-nocache-$r.cpu" "$(first "$line")")
          pu=$(cpu_per_op "$RES/proc-pgbench-$r.cpu" "$tps" | cut -d' ' -f2)
          say "  run $r: uncached $(first "$line") req/s (p99 $(p99of "$line") ms; CPU per request: osbackend $cu us, PostgreSQL $cpg us), pgbench $(fmt "$tps") tps (PostgreSQL $pu us per query), ratio $(ratio "$(first "$line")" "$tps")"
          l_nc+=" $(first "$line")"; l_p99+=" $(p99of "$line")"; l_tps+=" $tps"
          l_cu+=" $cu"; l_cp+=" $cpg"; l_pu+=" $pu"; l_ratio+=" $(ratio "$(first "$line")" "$tps")"
        done
        nc="$(median $l_nc) $(median $l_p99) 0 0"
        ;;
    esac
    stop_pid osbackend-nocache
  fi
  tps=$(median $l_tps)
  say "  osbackend uncached (median): $nc"
  if up osbackend; then cached=$(proc_measure osbackend-cached "$OSB_PORT" 5s); else cached="n/a: server not running"; fi
  say "  osbackend cached:   $cached"
  if up baseline; then node=$(proc_measure baseline "$NODE_PORT" 3s); else node="n/a: server not running"; fi
  say "  baseline:           $node"
  for v in "$cached" "$node"; do
    case "$v" in [0-9]*) set -- $v; [ "$3" != 0 ] || [ "$4" != 0 ] && say "  note: a run had $3 non-2xx responses and $4 socket errors (raw files in $RES)";; esac
  done
  grep -l "Non-2xx\|Socket errors" "$RES"/proc-osbackend-nocache-*.txt >/dev/null 2>&1 &&
    say "  note: an uncached run had non-2xx responses or socket errors (raw files in $RES)"
  say "  pgbench -S -M prepared -c 20 -j 2 -T 10 (median): $tps tps"
  # CPU per request: osbackend's own and PostgreSQL's (all its backends),
  # against PostgreSQL's per query under pgbench (docs/benchmarks.md §b).
  say "  CPU per uncached request (medians): osbackend $(median $l_cu) us, PostgreSQL $(median $l_cp) us; per pgbench query: PostgreSQL $(median $l_pu) us"
  row "procedure by id, uncached server CPU us/req" "$(median $l_cu)" n/a lower 1
  row "procedure by id, uncached PostgreSQL CPU us/req" "$(median $l_cp)" n/a lower 1

  r1=$(first "$nc"); r2=$(first "$cached"); r3=$(first "$node")
  row "procedure by id, uncached req/s" "$r1" "$r3" higher
  row "procedure by id, cached req/s" "$r2" "$r3" higher
  row "procedure by id, uncached p99 ms" "$(p99of "$nc")" "$(p99of "$node")" lower 2
  row "procedure by id, cached p99 ms" "$(p99of "$cached")" "$(p99of "$node")" lower 2
  local q="pgbench -S ceiling $(fmt "$tps") tps (median); req/s ÷ tps: osbackend uncached $(median $l_ratio)"
  q+=" (per run:$l_ratio, goal ≥ 0.6), osbackend cached $(ratio "$r2" "$tps"), baseline $(ratio "$r3" "$tps")"
  say "  $q"
  NOTES+=("$q")
}

# auth_probe OUTFILE URL: a light latency probe (wrk -t1 -c4 -d10s), prints
# "rps p50_ms p99_ms" or "failed". Light on purpose: a saturating load would
# measure queueing, not whether the loop ever stalls.
auth_probe() {
  if ! timeout 60 wrk -t1 -c4 -d10s --timeout 5s --latency "$2" >"$1" 2>&1; then echo failed; return; fi
  awk '
    function ms(v,   u) { u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                          return (u == "us") ? v / 1000 : (u == "ms") ? v : (u == "s") ? v * 1000 : v }
    /^Requests\/sec:/ { rps = $2 } /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    END { if (rps == "") print "failed"; else printf "%s %.3f %.3f\n", rps, p50, p99 }' "$1"
}

section_auth() {
  hr "d. auth: JWT verification vs /health (wrk -t2 -c64 -d10s); /health p99 while $AUTH_LOGINS clients sign in"
  local url="http://127.0.0.1:$OSB_PORT" email pw token h s m alone storm
  if ! up osbackend; then
    say "  n/a: osbackend not running"
    row "auth: GET /api/auth/session (JWT) req/s" n/a n/a higher
    return
  fi
  # A throwaway account; the token lives only in this run's results dir.
  email="bench-$(randhex 6)@example.test"
  pw=$(randhex 12)
  token=$(curl -s -m 10 -X POST -H 'Content-Type: application/json' \
    --data "{\"email\":\"$email\",\"password\":\"$pw\"}" "$url/api/auth/register" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  if [ -z "$token" ]; then
    say "  n/a: POST /api/auth/register did not return a token"
    row "auth: GET /api/auth/session (JWT) req/s" n/a n/a higher
    return
  fi
  printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$RES/auth-bearer.lua"

  # 1. Token verification on an authenticated route against /health.
  h=$(wrk_run "$RES/auth-health.txt" "$url/health")
  s=$(wrk_run "$RES/auth-session.txt" "$url/api/auth/session" "$RES/auth-bearer.lua")
  m=$(wrk_run "$RES/auth-me.txt" "$url/api/auth/me" "$RES/auth-bearer.lua")
  say "  GET /health:                          $h"
  say "  GET /api/auth/session (JWT, no I/O):  $s"
  say "  GET /api/auth/me (JWT + one query):   $m"

  # 2. /health latency alone, then while AUTH_LOGINS connections sign in back
  #    to back (each login is one Argon2id verification on the threadpool).
  #    The sign-ins come from one wrk process, so the client side costs
  #    little CPU of its own.
  cat >"$RES/auth-login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"$email","password":"$pw"}'
LUA
  alone=$(auth_probe "$RES/auth-probe-alone.txt" "$url/health")
  timeout 60 wrk -t1 -c"$AUTH_LOGINS" -d14s --timeout 10s --latency -s "$RES/auth-login.lua" \
    "$url/api/auth/login" >"$RES/auth-logins.txt" 2>&1 &
  local storm_pid=$!
  sleep 2   # let the sign-ins fill the queue
  storm=$(auth_probe "$RES/auth-probe-logins.txt" "$url/health")
  wait "$storm_pid" 2>/dev/null
  local lrps lnon
  lrps=$(awk '/^Requests\/sec:/ { print $2 }' "$RES/auth-logins.txt")
  lnon=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$RES/auth-logins.txt")
  say "  GET /health -c4, no sign-ins:         $alone (req/s p50 p99)"
  say "  GET /health -c4, $AUTH_LOGINS sign-ins running:   $storm (req/s p50 p99); sign-ins ${lrps:-?}/s, non-2xx ${lnon:-0}"

  first() { case "$1" in [0-9]*) set -- $1; echo "$1";; *) echo failed;; esac; }
  nth() { local i=$2; case "$1" in [0-9]*) set -- $1; echo "${!i}";; *) echo failed;; esac; }
  row "auth: GET /api/auth/session (JWT) req/s" "$(first "$s")" n/a higher
  row "auth: GET /api/auth/me (JWT + query) req/s" "$(first "$m")" n/a higher
  row "auth: /health p99 ms, no sign-ins (-c4)" "$(nth "$alone" 3)" n/a lower 3
  row "auth: /health p99 ms, $AUTH_LOGINS sign-ins (-c4)" "$(nth "$storm" 3)" n/a lower 3
  local q="auth: JWT route at $(ratio "$(first "$s")" "$(first "$h")") of /health throughput;"
  q+=" /health p99 with $AUTH_LOGINS concurrent Argon2id sign-ins $(fmt "$(nth "$storm" 3)" 3) ms vs $(fmt "$(nth "$alone" 3)" 3) ms without"
  say "  $q"
  NOTES+=("$q")
}

jget() { sed -n 's/^WSLOAD .*"'"$2"'":\([^,}]*\).*/\1/p' "$1" | tail -n 1; }

# ws_measure NAME PORT CONNS RATE [TAG]: runs wsload, prints a one-line digest
# (fields: see WS_FIELDS) or n/a/failed.
WS_FIELDS="deliveries_per_s loss_pct p50_ms p99_ms rss_per_conn_kb ok conns_subscribed pub_sent pub_due lost
  client_cpu_pct pub_p50_ms pub_p99_ms server_cpu_pct server_ns_per_delivery server_user_share_pct pub_acked"
ws_measure() {
  local who=$1 port=$2 conns=$3 rate=$4 tag=${5:-} out code rc f line=""
  out="$RES/ws-$who-$conns-$rate$tag.txt"
  if ! up "$who"; then echo "n/a: server not running"; return; fi
  code=$(http_code -X POST -H "Authorization: Bearer $SERVICE_API_KEY" -H 'Content-Type: application/json' \
    --data '{"channel":"market:all","data":{"probe":true}}' "http://127.0.0.1:$port/api/realtime/publish")
  if [ "$code" = 404 ]; then echo "n/a: /api/realtime/publish not available"; return; fi
  timeout $((WS_DURATION + 150)) "$WSLOAD" --port "$port" --conns "$conns" --rate "$rate" \
    --duration "$WS_DURATION" --server-pid "${PIDS[$who]}" --drain-ms 10000 --threads "$WS_THREADS" \
    --pub-conns 4 --pub-inflight 8 --key "$SERVICE_API_KEY" >"$out" 2>&1
  rc=$?
  if ! grep -q '^WSLOAD ' "$out"; then echo "failed (wsload exit $rc, see $out)"; return; fi
  for f in $WS_FIELDS; do v=$(jget "$out" "$f"); line+="${v:-?} "; done
  echo "$line"
}

# wsf DIGEST N: field N of a ws_measure digest ("n/a" or "failed" otherwise).
wsf() { local i=$2; case "$1" in [0-9]*) set -- $1; echo "${!i}";; n/a*) echo n/a;; *) echo failed;; esac; }

section_ws() {
  local pair conns rate who r v i
  for pair in $WS_MATRIX; do
    conns=${pair%%:*}; rate=${pair##*:}
    hr "c. WebSocket fan-out: $conns sockets × $rate msg/s for ${WS_DURATION}s on market:all (wsload; $WS_RUNS interleaved runs per server, median)"
    declare -A D=()   # D[who,field#] = space-separated per-run values
    for r in $(seq "$WS_RUNS"); do
      for who in osbackend uws baseline; do
        serving "$who" || continue
        # A fresh process for each run: the RSS figure then measures this
        # run's sockets, not heap left over from the last one.
        restart "$who"
        v=$(ws_measure "$who" "$(port_of "$who")" "$conns" "$rate" "-$r")
        case "$v" in
          [0-9]*) set -- $v
            say "  $who run $r: $(fmt "$1") deliveries/s, publishes sent ${8}/${9} (acked ${17}), delivery p50 $3 ms p99 $4 ms," \
                "publish p50 ${12} ms p99 ${13} ms, server CPU ${14} % (${16} % user), ${15} ns/delivery," \
                "RSS $5 KB/conn, lost ${10}, wsload CPU ${11} %$([ "$6" = true ] || echo ' [wsload: FAIL]')"
            for i in 1 2 3 4 5 8 12 13 14 15 16; do D[$who,$i]+=" ${!i}"; done;;
          *) say "  $who run $r: $v";;
        esac
      done
    done
    med() { if serving "$1"; then median ${D[$1,$2]:-}; else echo n/a; fi; }
    m3() { row3 "ws ${conns}x${rate} $1" "$(med osbackend "$2")" "$(med uws "$2")" "$(med baseline "$2")" "$3" "${4:-0}"; }
    m3 "deliveries/s" 1 higher
    m3 "publishes sent of $((rate * WS_DURATION))" 8 higher
    m3 "delivery p50 ms" 3 lower 2
    m3 "delivery p99 ms" 4 lower 2
    m3 "publish p50 ms" 12 lower 2
    m3 "publish p99 ms" 13 lower 2
    m3 "server CPU % of a core" 14 lower 1
    m3 "server CPU-ns per delivery" 15 lower
    m3 "server user share of CPU %" 16 lower 1
    m3 "loss %" 2 lower 4
    unset D
  done
}

# idle_measure NAME: RSS per idle subscribed WebSocket ($IDLE_CONNS sockets,
# one publish), in KB, or n/a/failed.
idle_measure() {
  local who=$1 out="$RES/idle-$1-$2.txt" v
  if ! up "$who"; then echo "n/a"; return; fi
  timeout 150 "$WSLOAD" --port "$(port_of "$who")" --conns "$IDLE_CONNS" --rate 1 --duration 1 \
    --server-pid "${PIDS[$who]}" --settle-ms 1000 --drain-ms 5000 --key "$SERVICE_API_KEY" --quiet >"$out" 2>&1
  v=$(jget "$out" rss_per_conn_kb)
  case "$v" in [0-9]*) echo "$v";; *) echo failed;; esac
}

section_idle() {
  hr "e. RSS per idle WebSocket: $IDLE_CONNS subscribed sockets on market:all, fresh processes ($IDLE_RUNS interleaved runs, median)"
  local r who v
  declare -A I=()
  for r in $(seq "$IDLE_RUNS"); do
    for who in osbackend uws baseline; do
      serving "$who" || continue
      restart "$who"
      v=$(idle_measure "$who" "$r")
      say "  $who run $r: $v KB/connection"
      I[$who]+=" $v"
    done
  done
  mi() { if serving "$1"; then median ${I[$1]:-}; else echo n/a; fi; }
  row3 "RSS KB per idle WebSocket" "$(mi osbackend)" "$(mi uws)" "$(mi baseline)" lower 2
}

# apps_ws LABEL PORT RATE: wsload --market at RATE PUTs/s to 1,000
# subscribers of market:all; prints "writes/s p50 p99 deliveries/s lost" or failed.
apps_ws() {
  local label=$1 port=$2 rate=$3 out="$RES/apps-$1.txt"
  if ! timeout $((APPS_DURATION + 90)) "$WSLOAD" --port "$port" --conns 1000 --rate "$rate" \
       --duration "$APPS_DURATION" --channel market:all --key "$SERVICE_API_KEY" --market 10000 \
       --pub-conns 8 --pub-inflight 16 --quiet >"$out" 2>&1; then
    grep -q '^WSLOAD ' "$out" || { echo failed; return; }
  fi
  local j; j=$(grep '^WSLOAD ' "$out" | tail -n 1 | cut -c8-)
  node -e 'const j = JSON.parse(process.argv[1]);
    console.log([(j.pub_acked / j.duration_s).toFixed(1), j.p50_ms, j.p99_ms, j.deliveries_per_s, j.lost].join(" "))' "$j" 2>/dev/null || echo failed
}

section_apps() {
  local backend port=$((BASE + 4)) users="$RES/apps-users.txt" o200 omax nt
  for backend in sqlite postgresql; do
    hr "d. apps on $backend: Market Data PUT → event (1,000 subscribers), notifications (1,000 users)"
    local dburl=""
    [ "$backend" = postgresql ] && dburl="${OSB_PG_URL%/*}/apps"
    if [ -n "$dburl" ]; then psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS apps" -c "CREATE DATABASE apps" >/dev/null 2>&1; fi
    rm -f "$RES/apps.db" "$RES/apps.db-wal" "$RES/apps.db-shm"
    start_osb "apps-$backend" "$port" DATABASE_URL="$dburl" SQLITE_PATH="$RES/apps.db" MAX_CONNECTIONS_PER_IP=0 || continue
    o200=$(apps_ws "$backend-200" "$port" 200)
    omax=$(apps_ws "$backend-max" "$port" 20000)
    # 1,000 users made directly in the database (registration would spend a
    # minute in Argon2id); tokens are signed by the load script.
    node -e 'const c = require("crypto"); for (let i = 0; i < 1000; i++) console.log(c.randomUUID())' >"$users"
    local sql; sql=$(awk '{ printf "INSERT INTO users (id, email, role) VALUES ('"'"'%s'"'"', '"'"'%s@bench.invalid'"'"', '"'"'user'"'"');\n", $1, $1 }' "$users")
    if [ -n "$dburl" ]; then psql "$dburl" -q -v ON_ERROR_STOP=1 <<<"BEGIN; $sql COMMIT;" >/dev/null
    else sqlite3 -cmd ".timeout 5000" "$RES/apps.db" <<<"BEGIN; $sql COMMIT;"; fi
    nt=$(JWT_SECRET="$JWT_SECRET" SERVICE_API_KEY="$SERVICE_API_KEY" timeout $((APPS_DURATION + 120)) \
         node "$ROOT/bench/notify_load.mjs" --port "$port" --users "$users" --rate 200 --duration "$APPS_DURATION" 2>&1 |
         tee "$RES/apps-notify-$backend.txt" | grep '^NOTIFY ' | cut -c8-)
    stop_pid "apps-$backend"
    pick() { local i=$2; case "$1" in [0-9]*) set -- $1; echo "${!i}";; *) echo failed;; esac; }
    say "  market 200/s: $(pick "$o200" 1) writes/s, PUT → event p50 $(pick "$o200" 2) ms, p99 $(pick "$o200" 3) ms, $(pick "$o200" 4) deliveries/s, lost $(pick "$o200" 5)"
    say "  market max:   $(pick "$omax" 1) writes/s, PUT → event p50 $(pick "$omax" 2) ms, p99 $(pick "$omax" 3) ms, $(pick "$omax" 4) deliveries/s, lost $(pick "$omax" 5)"
    say "  notifications 200/s to 1,000 users: ${nt:-failed}"
    local np99; np99=$(node -e 'try { console.log(JSON.parse(process.argv[1]).p99_ms.toFixed(2)) } catch { console.log("failed") }' "$nt")
    NOTES+=("apps $backend: market 200/s p99 $(pick "$o200" 3) ms (goal ≤ 20), max $(pick "$omax" 1) writes/s p99 $(pick "$omax" 3) ms; notify 200/s p99 $np99 ms")
  done
}

# upstream: 500 concurrent TTS calls through the libcurl-multi client to a
# local fake ElevenLabs answering after 50 ms (bench/upstream_load.mjs runs
# the fake and the load in one Node process), /health probed meanwhile; and
# the breaker's closed-path micro-benchmark from the release build.
UP_CONC=${BENCH_UPSTREAM_CONC:-500}
UP_DELAY=${BENCH_UPSTREAM_DELAY_MS:-50}
UP_DURATION=${BENCH_UPSTREAM_DURATION:-10}
section_upstream() {
  hr "e. upstream: $UP_CONC concurrent POST /api/voice/tts for ${UP_DURATION}s through the client to a fake answering after $UP_DELAY ms"
  local port=$((BASE + 4)) fport=$((BASE + 5)) key token email pw out c0 c1 hz line
  hz=$(getconf CLK_TCK)
  key=$(randhex 16)
  # A dedicated instance: voice on, a bulkhead as wide as the load, no audio
  # cache (every call goes upstream), a breaker that the load cannot trip.
  if ! start_osb upstream "$port" ELEVENLABS_API_KEY="$key" ELEVENLABS_BASE_URL="http://127.0.0.1:$fport" \
       TTS_MAX_CONCURRENCY=$((UP_CONC + 16)) TTS_CACHE_MB=0 BREAKER_SLOW_CALL_MS=60000 UPSTREAM_TIMEOUT_MS=30000; then
    row "upstream: TTS calls/s" failed n/a higher
    return
  fi
  email="bench-up-$(randhex 6)@example.test"; pw=$(randhex 12)
  token=$(curl -s -m 10 -X POST -H 'Content-Type: application/json' \
    --data "{\"email\":\"$email\",\"password\":\"$pw\"}" "http://127.0.0.1:$port/api/auth/register" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  if [ -z "$token" ]; then
    say "  n/a: POST /api/auth/register did not return a token"
    stop_pid upstream
    return
  fi
  out="$RES/upstream-load.txt"
  # Three processes on purpose: the fake, the load and the /health probe each
  # get their own event loop, so none measures the others' delays.
  node "$ROOT/bench/upstream_load.mjs" --mode fake --fake-port "$fport" --delay "$UP_DELAY" \
    --stats "$RES/upstream-fake.json" >"$RES/upstream-fake.txt" 2>&1 &
  PIDS[upfake]=$!
  for _ in $(seq 100); do grep -q '^FAKE listening' "$RES/upstream-fake.txt" 2>/dev/null && break; sleep 0.1; done
  c0=$(cpu_ticks "${PIDS[upstream]}")
  node "$ROOT/bench/upstream_load.mjs" --mode health --port "$port" --duration "$UP_DURATION" >"$RES/upstream-health.txt" 2>&1 &
  local hpid=$!
  timeout $((UP_DURATION + 60)) node "$ROOT/bench/upstream_load.mjs" --port "$port" --fake-port "$fport" \
    --token "$token" --conc "$UP_CONC" --delay "$UP_DELAY" --duration "$UP_DURATION" --external-fake 1 >"$out" 2>&1
  wait "$hpid" 2>/dev/null
  c1=$(cpu_ticks "${PIDS[upstream]}")
  stop_pid upfake
  line=$(sed -n 's/^UPLOAD //p' "$out" | tail -n 1)
  local hline fline
  hline=$(sed -n 's/^HEALTH //p' "$RES/upstream-health.txt" | tail -n 1)
  fline=$(cat "$RES/upstream-fake.json" 2>/dev/null)
  if [ -z "$line" ]; then
    say "  failed (see $out)"
    row "upstream: TTS calls/s" failed n/a higher
    stop_pid upstream
    return
  fi
  g() { printf '%s' "$line" | sed -n 's/.*"'"$1"'":\([^,}]*\).*/\1/p'; }
  gj() { printf '%s' "$1" | sed -n 's/.*"'"$2"'":\([^,}]*\).*/\1/p'; }
  local fp50 fp99 p50 p99 added50 added99
  fp50=$(gj "$fline" p50_ms); fp99=$(gj "$fline" p99_ms); p50=$(g p50_ms); p99=$(g p99_ms)
  added50=$(awk -v a="$p50" -v b="$fp50" 'BEGIN { if (b != "") printf "%.2f", a - b; else print "n/a" }')
  added99=$(awk -v a="$p99" -v b="$fp99" 'BEGIN { if (b != "") printf "%.2f", a - b; else print "n/a" }')
  local calls ok cpu_us
  calls=$(g calls); ok=$(g ok)
  cpu_us=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / hz * 1e6 / n; else print "n/a" }')
  say "  $(g calls_per_s) calls/s ($ok ok, $(g errors) errors; the fake saw $(gj "$fline" calls), at most $(gj "$fline" max_in_flight) at once)"
  say "  latency at the client p50 $p50 ms, p99 $p99 ms; the fake's own p50 ${fp50:-?} ms, p99 ${fp99:-?} ms"
  say "  added by osbackend: p50 $added50 ms, p99 $added99 ms; server CPU $cpu_us us per call"
  say "  /health while it runs: p50 $(gj "$hline" p50_ms) ms, p99 $(gj "$hline" p99_ms) ms over $(gj "$hline" n) probes"
  row "upstream: TTS calls/s ($UP_CONC concurrent)" "$(g calls_per_s)" n/a higher 1
  row "upstream: added latency p50 ms" "$added50" n/a lower 2
  row "upstream: added latency p99 ms" "$added99" n/a lower 2
  row "upstream: server CPU us per call" "$cpu_us" n/a lower 1
  row "upstream: /health p99 ms during the load" "$(gj "$hline" p99_ms)" n/a lower 2
  stop_pid upstream
  # The breaker's closed path (goal <= 100 ns per call), release build.
  if cmake --build "$BUILD" --target upstream_test_breaker >"$RES/upstream-breaker-build.txt" 2>&1 &&
     "$BUILD/upstream_test_breaker" >"$RES/upstream-breaker.txt" 2>&1; then
    local bl ns
    bl=$(grep '^breaker closed path' "$RES/upstream-breaker.txt")
    say "  $bl"
    ns=$(printf '%s' "$bl" | sed -n 's/.*metrics: \([0-9.]*\) ns.*/\1/p')
    row "upstream: breaker+metrics ns per call (closed)" "${ns:-failed}" n/a lower 1
  else
    say "  breaker micro-benchmark: not built (cmocka missing?), see $RES/upstream-breaker-build.txt"
  fi
}

# cl_ws LABEL SUBPORT PUBPORT CHANNEL: wsload with 1,000 subscribers on SUBPORT,
# 200 publishes/s through PUBPORT; prints "p50 p99 deliveries/s lost ok" or failed.
cl_ws() {
  local out="$RES/cluster-$1.txt"
  timeout $((CLUSTER_DURATION + 120)) "$WSLOAD" --port "$2" --pub-port "$3" --conns 1000 --rate 200 \
    --duration "$CLUSTER_DURATION" --channel "$4" --key "$SERVICE_API_KEY" --drain-ms 10000 \
    --pub-conns 4 --pub-inflight 8 --quiet >"$out" 2>&1
  grep -q '^WSLOAD ' "$out" || { echo failed; return; }
  echo "$(jget "$out" p50_ms) $(jget "$out" p99_ms) $(jget "$out" deliveries_per_s) $(jget "$out" lost) $(jget "$out" ok)"
}

section_cluster() {
  local pa=$((BASE + 5)) pb=$((BASE + 6)) pw=$((BASE + 7)) hz same cross loc a0 a1 b0 b1 t0 t1
  hz=$(getconf CLK_TCK)
  hr "e. cluster: 2 instances on one PostgreSQL (CLUSTER_BUS=postgres), 1,000 subscribers on each, 200 msg/s published on A"
  if ! start_osb cl-local "$pa" CLUSTER_BUS=local; then return; fi
  loc=$(cl_ws local "$pa" "$pa" market:bench-local)
  stop_pid cl-local
  start_osb cl-a "$pa" CLUSTER_BUS=postgres CLUSTER_NODE_ID=bench-a || return
  start_osb cl-b "$pb" CLUSTER_BUS=postgres CLUSTER_NODE_ID=bench-b || { stop_pid cl-a; return; }
  sleep 1
  # one at a time (the load generator alone on the machine), then both at
  # once: subscribers on A of a channel published on A, and subscribers on
  # B of a channel published on A (the bus carries it)
  local same1 cross1
  same1=$(cl_ws same1 "$pa" "$pa" market:bench-same1)
  a0=$(cpu_ticks "${PIDS[cl-a]}"); b0=$(cpu_ticks "${PIDS[cl-b]}"); t0=$(date +%s.%N)
  cross1=$(cl_ws cross1 "$pb" "$pa" market:bench-cross1)
  a1=$(cpu_ticks "${PIDS[cl-a]}"); b1=$(cpu_ticks "${PIDS[cl-b]}"); t1=$(date +%s.%N)
  cl_ws same "$pa" "$pa" market:bench-same >"$RES/cluster-same.line" &
  local wpid=$!
  cross=$(cl_ws cross "$pb" "$pa" market:bench-cross)
  wait "$wpid"; same=$(cat "$RES/cluster-same.line")
  stop_pid cl-a; stop_pid cl-b
  pick() { local i=$2; case "$1" in [0-9]*) set -- $1; echo "${!i}";; *) echo failed;; esac; }
  say "  CLUSTER_BUS=local, one instance:           p50 $(pick "$loc" 1) ms, p99 $(pick "$loc" 2) ms, $(pick "$loc" 3) deliveries/s, lost $(pick "$loc" 4)"
  say "  postgres bus, same-instance (A→A) alone:   p50 $(pick "$same1" 1) ms, p99 $(pick "$same1" 2) ms, $(pick "$same1" 3) deliveries/s, lost $(pick "$same1" 4)"
  say "  postgres bus, cross-instance (A→B) alone:  p50 $(pick "$cross1" 1) ms, p99 $(pick "$cross1" 2) ms, $(pick "$cross1" 3) deliveries/s, lost $(pick "$cross1" 4)"
  say "  CPU during the cross-instance run: A $(awk -v a="$a0" -v b="$a1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz / (t1 - t0) }') cores (publishes, NOTIFY)," \
      "B $(awk -v a="$b0" -v b="$b1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz / (t1 - t0) }') cores (bus receive + fan-out to 1,000)"
  say "  both at once, 1,000 subscribers on each:   same p50 $(pick "$same" 1) / p99 $(pick "$same" 2) ms, cross p50 $(pick "$cross" 1) / p99 $(pick "$cross" 2) ms, lost $(pick "$same" 4)+$(pick "$cross" 4)"
  NOTES+=("cluster 1000 subs, 200/s on A: same-instance p99 $(pick "$same1" 2) ms, cross-instance p99 $(pick "$cross1" 2) ms (goal ≤ 2x), both at once p99 $(pick "$same" 2)/$(pick "$cross" 2) ms, lost $(pick "$same1" 4)+$(pick "$cross1" 4)+$(pick "$same" 4)+$(pick "$cross" 4); local bus p99 $(pick "$loc" 2) ms")

  hr "f. WORKERS=2 vs 1 on GET /health (wrk -t2 -c64 -d10s; $(nproc) cores)"
  local w line
  for w in 1 2; do
    start_osb "workers-$w" "$pw" CLUSTER_BUS=postgres WORKERS="$w" CLUSTER_NODE_ID="bench-w$w" || continue
    sleep 1
    line=$(wrk_run "$RES/health-workers-$w.txt" "http://127.0.0.1:$pw/health")
    say "  WORKERS=$w: $line (req/s p99_ms non2xx errors)"
    stop_pid "workers-$w"
    set -- $line
    NOTES+=("WORKERS=$w /health: ${1:-failed} req/s, p99 ${2:-?} ms")
  done
}

# chat: CHAT_CONC concurrent conversations, each with its own WebSocket on
# chat:<id>, replying from a fake OpenAI-compatible LLM that streams 50
# tokens at 50 tokens/s (bench/chat_load.mjs; fake, load and /health probe in
# three processes). Added first-delta latency = the client's first
# agent.delta minus the fake writing that reply's first token (one machine
# clock); frames/s = agent.delta frames received; CPU per reply from
# /proc/<pid>/stat; RSS per active stream = (peak − idle RSS) / CHAT_CONC.
CHAT_CONC=${BENCH_CHAT_CONC:-200}
CHAT_DURATION=${BENCH_CHAT_DURATION:-10}

section_chat() {
  hr "f. chat: $CHAT_CONC concurrent conversations for ${CHAT_DURATION}s, a fake LLM streaming 50 tokens/s"
  local port=$((BASE + 10)) fport=$((BASE + 11)) token email pw c0 c1 hz line hidle hload
  hz=$(getconf CLK_TCK)
  rm -f "$RES/chat.db" "$RES/chat.db-wal" "$RES/chat.db-shm"
  node "$ROOT/bench/chat_load.mjs" --mode fake --fake-port "$fport" --tokens 50 --rate 50 \
    --stats "$RES/chat-fake.json" >"$RES/chat-fake.txt" 2>&1 &
  PIDS[chatfake]=$!
  for _ in $(seq 100); do grep -q '^FAKE listening' "$RES/chat-fake.txt" 2>/dev/null && break; sleep 0.1; done
  if ! start_osb chat "$port" DATABASE_URL= SQLITE_PATH="$RES/chat.db" LLM_API_KEY="$(randhex 16)" \
       LLM_BASE_URL="http://127.0.0.1:$fport/v1" LLM_MAX_CONCURRENCY=$((CHAT_CONC + 16)) \
       BREAKER_SLOW_CALL_MS=60000 UPSTREAM_TIMEOUT_MS=30000 REGISTER_IP_BURST=1000; then
    stop_pid chatfake
    row "chat: added first-delta p99 ms" failed n/a lower
    return
  fi
  email="bench-chat-$(randhex 6)@example.test"; pw=$(randhex 12)
  token=$(curl -s -m 10 -X POST -H 'Content-Type: application/json' \
    --data "{\"email\":\"$email\",\"password\":\"$pw\"}" "http://127.0.0.1:$port/api/auth/register" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  if [ -z "$token" ]; then
    say "  n/a: POST /api/auth/register did not return a token"
    stop_pid chat; stop_pid chatfake
    return
  fi
  node "$ROOT/bench/chat_load.mjs" --mode health --port "$port" --duration 5 >"$RES/chat-health-idle.txt" 2>&1
  c0=$(cpu_ticks "${PIDS[chat]}")
  node "$ROOT/bench/chat_load.mjs" --mode health --port "$port" --duration "$CHAT_DURATION" >"$RES/chat-health.txt" 2>&1 &
  local hpid=$!
  timeout $((CHAT_DURATION + 90)) node "$ROOT/bench/chat_load.mjs" --port "$port" --token "$token" \
    --pid "${PIDS[chat]}" --conc "$CHAT_CONC" --duration "$CHAT_DURATION" >"$RES/chat-load.txt" 2>&1
  wait "$hpid" 2>/dev/null
  c1=$(cpu_ticks "${PIDS[chat]}")
  stop_pid chatfake
  stop_pid chat
  line=$(node "$ROOT/bench/chat_load.mjs" --mode join --stats "$RES/chat-fake.json" --load "$RES/chat-load.txt" 2>/dev/null |
         sed -n 's/^CHATJOIN //p')
  if [ -z "$line" ]; then
    say "  failed (see $RES/chat-load.txt)"
    row "chat: added first-delta p99 ms" failed n/a lower
    return
  fi
  g() { printf '%s' "$line" | sed -n 's/.*"'"$1"'":\([^,}]*\).*/\1/p'; }
  gj() { printf '%s' "$1" | sed -n 's/.*"'"$2"'":\([^,}]*\).*/\1/p'; }
  hidle=$(sed -n 's/^HEALTH //p' "$RES/chat-health-idle.txt" | tail -n 1)
  hload=$(sed -n 's/^HEALTH //p' "$RES/chat-health.txt" | tail -n 1)
  local cpu_us
  cpu_us=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v n="$(g replies)" 'BEGIN { if (n > 0) printf "%.0f", (b - a) / hz * 1e6 / n; else print "n/a" }')
  say "  $(g replies) replies ($(g errors) errors), $(g frames_per_s) agent.delta frames/s delivered"
  say "  added first-delta latency: p50 $(g added_first_delta_p50_ms) ms, p99 $(g added_first_delta_p99_ms) ms (goal p99 ≤ 5 ms; $(g matched) replies matched)"
  say "    after the first round (all $CHAT_CONC streams starting at once): p50 $(g steady_first_delta_p50_ms) ms, p99 $(g steady_first_delta_p99_ms) ms"
  say "  server CPU $cpu_us us per reply; RSS $(g rss_idle_kb) kB idle, $(g rss_peak_kb) kB peak: $(g rss_per_stream_kb) kB per active stream"
  say "  /health p99: idle $(gj "$hidle" p99_ms) ms, during the load $(gj "$hload" p99_ms) ms"
  row "chat: added first-delta p50 ms ($CHAT_CONC streams)" "$(g added_first_delta_p50_ms)" n/a lower 2
  row "chat: added first-delta p99 ms" "$(g added_first_delta_p99_ms)" n/a lower 2
  row "chat: added first-delta p99 ms, steady state" "$(g steady_first_delta_p99_ms)" n/a lower 2
  row "chat: agent.delta frames/s" "$(g frames_per_s)" n/a higher 0
  row "chat: server CPU us per reply" "$cpu_us" n/a lower 0
  row "chat: RSS kB per active stream" "$(g rss_per_stream_kb)" n/a lower 1
  row "chat: /health p99 ms during the load" "$(gj "$hload" p99_ms)" n/a lower 2
  NOTES+=("chat: added first-delta p99 $(g added_first_delta_p99_ms) ms (goal ≤ 5), /health p99 $(gj "$hidle" p99_ms) → $(gj "$hload" p99_ms) ms under $CHAT_CONC streams")
}

# -------------------------------------------------------------------- run
T0=$(date +%s)
say "osbackend benchmark  $(date -u +%FT%TZ)  results: $RES"
OSB_VERSION=$("$OSB_BIN" version 2>/dev/null | head -n 1); [ -n "$OSB_VERSION" ] || OSB_VERSION='?'
say "machine: $(nproc) cores, $(uname -sr); osbackend $OSB_VERSION; node $(node --version 2>/dev/null || echo '?')"
for tool in wrk pgbench psql node curl; do
  command -v "$tool" >/dev/null || { say "missing tool: $tool (scripts/deps.sh bench installs it)"; exit 2; }
done
[ -x "$WSLOAD" ] || { say "missing $WSLOAD: build the release tree first (make bench does)"; exit 2; }

# Both servers need a descriptor each per socket (10,000 WebSockets).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "open files limit: $(ulimit -n)"

SERVICE_API_KEY=$(randhex 24)
JWT_SECRET=$(randhex 32)

hr "setup"
"$PG" destroy >/dev/null 2>&1 || true
if ! OSB_PG_URL=$("$PG" start 2>"$RES/pg-start.txt"); then
  say "  PostgreSQL failed to start (see $RES/pg-start.txt)"
  exit 1
fi
OSB_DB_URL=$OSB_PG_URL
PG_ADMIN_URL=$OSB_PG_URL
NODE_DB_URL=${OSB_PG_URL%/*}/baseline
PGB_URL=${OSB_PG_URL%/*}/pgbench
say "  PostgreSQL on port $PGPORT_BENCH ($PGDIR); osbackend uses database osb, the baseline database baseline"
# The baseline's seed DROPs market_procedures: it only ever touches database "baseline".
if ! { psql "$PG_ADMIN_URL" -qc "CREATE DATABASE baseline" && psql "$NODE_DB_URL" -q -v ON_ERROR_STOP=1 -f "$NODE_DIR/seed.sql"; } \
     >"$RES/baseline-seed.txt" 2>&1; then
  say "  seeding the baseline database failed (see $RES/baseline-seed.txt)"
fi
serving baseline && start_node
serving osbackend && start_osb osbackend "$OSB_PORT"
serving uws && start_uws

for s in $SECTIONS; do
  case "$s" in
    health) section_health ;;
    db) section_db ;;
    ws) section_ws ;;
    idle) section_idle ;;
    auth) section_auth ;;
    apps) section_apps ;;
    upstream) section_upstream ;;
    cluster) section_cluster ;;
    chat) section_chat ;;
    *) say "unknown section: $s" ;;
  esac
  check_servers
done

hr "summary (ratios = osbackend ÷ uws, osbackend ÷ baseline; one run, interleaved: compare ratios, not absolute figures)"
{
  printf '%-44s %12s %12s %12s %7s %9s  %s\n' metric osbackend uws baseline '÷uws' '÷baseline' better
  for line in "${SUMMARY[@]}"; do
    IFS='|' read -r m o u n ru rn b <<<"$line"
    printf '%-44s %12s %12s %12s %7s %9s  %s\n' "$m" "$o" "$u" "$n" "$ru" "$rn" "$b"
  done
  for line in "${NOTES[@]}"; do printf '%s\n' "$line"; done
} | tee "$RES/summary.txt"
say ""
say "total time: $(( $(date +%s) - T0 )) s; raw outputs in $RES"
if [ "$START_FAILED" != 0 ] || [ "$SERVER_DIED" != 0 ]; then
  say "a server failed to start or died during the run: exit 1"
  exit 1
fi
exit 0
