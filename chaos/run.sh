#!/usr/bin/env bash
# Fault scenarios against real registries and a real `ferry serve`.
#
#   chaos/run.sh NAME [--short]     run one scenario (crash, flaky, corrupt,
#                                   partition, restart, disk, journal, gc)
#   chaos/run.sh all [--short]      run every scenario in turn
#
# Each scenario is chaos/scenarios/NAME.sh; it prints its figures (lines
# starting "figure:") and exits nonzero on a violation. --short is the
# bounded version `./build.sh test` runs (at most 2 minutes each).
# The build directory is $FERRY_BUILD_DIR (default build/); the binaries are
# build/ferry and build/ferry-chaos-proxy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
ALL=(crash flaky corrupt partition restart disk journal gc)

usage() {
  echo "usage: chaos/run.sh NAME|all [--short]   (NAME: ${ALL[*]})" >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
name=$1
shift
short=0
for a in "$@"; do
  case "$a" in
  --short) short=1 ;;
  *) usage ;;
  esac
done
export CHAOS_SHORT=$short
export FERRY_SOURCE_DIR="$top"
export FERRY_BUILD_DIR="${FERRY_BUILD_DIR:-$top/build}"

run_one() {
  local s=$1 script="$here/scenarios/$1.sh"
  [[ -f "$script" ]] || {
    echo "chaos: no scenario '$s' (want one of: ${ALL[*]})" >&2
    return 2
  }
  echo "chaos: == $s$( ((short)) && echo ' (short)') =="
  bash "$script"
}

if [[ "$name" == all ]]; then
  failed=()
  for s in "${ALL[@]}"; do
    run_one "$s" || failed+=("$s")
  done
  if ((${#failed[@]} > 0)); then
    echo "chaos: FAILED: ${failed[*]}" >&2
    exit 1
  fi
  echo "chaos: every scenario passed"
else
  run_one "$name"
fi
