#!/usr/bin/env bash
# Install the Debian 12 packages osbackend needs, only those missing.
# Idempotent and quiet when everything is present.
# Usage: scripts/deps.sh [build|test|bench|fuzz]  (test includes fuzz: make test
# replays the fuzz corpora; chaos and soak use the test packages)
set -euo pipefail
what=${1:-build}

build_pkgs=(build-essential cmake pkg-config libuv1-dev libhttp-parser-dev libwslay-dev
            libpq-dev libsqlite3-dev libjansson-dev libssl-dev libcurl4-openssl-dev
            libsodium-dev)
# libFuzzer: Debian's clang 14 and its runtime (libclang_rt.fuzzer)
fuzz_pkgs=(clang clang-14 libclang-rt-14-dev)
test_pkgs=(libcmocka-dev postgresql nodejs npm sqlite3 prometheus python3-yaml)
bench_pkgs=(wrk postgresql nodejs curl sqlite3)

pkgs=("${build_pkgs[@]}")
# chromium: the dashboard browser tests (playwright-core drives it); tmux: `osbackend top` under a pseudo-terminal.
test_pkgs+=(chromium tmux)
case "$what" in
  test)  pkgs+=("${test_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  fuzz)  pkgs+=("${fuzz_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  build) ;;
  *) echo "usage: $0 [build|test|bench|fuzz]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  # node from another source (the machine's own) counts as present.
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
  echo "deps: FAILED to install ${missing[*]}" >&2; exit 1; }
