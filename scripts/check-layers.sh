#!/usr/bin/env bash
# check-layers.sh [SOURCE_DIR]: the module direction, read from the includes.
#
#   core <- obs <- http, db <- auth <- realtime <- upstream <- voice <- apps <- main
#
# A file of src/<m>/ or tests/unit/<m>/ may include "<x>/..." only for a
# module x that <m> may use (itself, or one below it on the line; http and
# db do not see each other). "<x>/internal.h" is for x's own files only.
# A public header (src/<m>/<name>.h other than internal.h and *_internal.h,
# which are module-private like internal.h) includes only
# core's headers and its own module's: a type it needs from elsewhere is
# forward-declared (docs/architecture.md). src/main.c may include anything
# public. Run by ctest as `layers`; the CMake targets enforce the same at
# compile and link time. Exit 0 when clean, 1 with one line per violation.
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2

declare -A may
may[core]="core"
may[obs]="core obs"
may[http]="core obs http"
may[db]="core obs db"
may[auth]="core obs http db auth"
may[realtime]="core obs http db auth realtime"
may[upstream]="core obs http db auth realtime upstream"
may[voice]="core obs http db auth realtime upstream voice"
may[apps]="core obs http db auth realtime upstream voice apps"
may[main]="core obs http db auth realtime upstream voice apps"
modules=" core obs http db auth realtime upstream voice apps "

bad=0
fail() { echo "check-layers: $*"; bad=1; }

check_file() {   # file module is_public_header
  local f=$1 m=$2 pub=$3 line x rest
  while IFS= read -r line; do
    x=${line#*\"}; rest=${x#*/}; x=${x%%/*}
    case "$modules" in *" $x "*) ;; *) continue ;; esac
    case " ${may[$m]} " in
      *" $x "*) ;;
      *) fail "$f: includes \"$x/${rest%\"*}\": $m may not use $x (allowed: ${may[$m]})"; continue ;;
    esac
    case "${rest%\"*}" in *internal.h) private=1 ;; *) private=0 ;; esac
    if [ "$private" = 1 ] && [ "$x" != "$m" ]; then
      fail "$f: includes $x's internal.h (module-private)"
    fi
    if [ "$pub" = 1 ] && [ "$x" != core ] && [ "$x" != "$m" ]; then
      fail "$f: public header includes \"$x/${rest%\"*}\" (forward-declare the type or move it down)"
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]+/' "$f")
}

for d in src/*/; do
  m=$(basename "$d")
  if [ -z "${may[$m]:-}" ]; then
    fail "src/$m/: not a known module (add it to CMakeLists.txt OSB_MODULES and to this script)"
    continue
  fi
  for f in "$d"*.c "$d"*.h; do
    [ -e "$f" ] || continue
    pub=0
    case "$(basename "$f")" in *internal.h) ;; *.h) pub=1 ;; esac
    check_file "$f" "$m" "$pub"
  done
done
[ -f src/main.c ] && check_file src/main.c main 0
for d in tests/unit/*/; do
  m=$(basename "$d")
  [ -n "${may[$m]:-}" ] || continue
  for f in "$d"*.c "$d"*.h; do
    [ -e "$f" ] && check_file "$f" "$m" 0
  done
done
[ $bad = 0 ] && echo "check-layers: clean"
exit $bad
