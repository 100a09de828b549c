# shellcheck shell=bash
# Helpers for the chaos scenarios, on top of tests/integration/proxy_lib.sh
# (which this sources: proxy_start, proxy_rules, proxy_stats,
# proxy_fault_count, chaos_proxy_bin; and lib.sh: TEST_TMP, registries,
# cleanup at exit). Used by chaos/scenarios/*.sh and
# tests/integration/chaos_*_test.sh.

if [[ -n "${_CHAOS_LIB_LOADED:-}" ]]; then
  return 0
fi
_CHAOS_LIB_LOADED=1
# The proxy's helpers live in tests/integration/proxy_lib.sh (which sources
# lib.sh), so that any integration test can start the proxy too.
# shellcheck source=../tests/integration/proxy_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/proxy_lib.sh"

# chaos_seed : sets `seed` to $CHAOS_SEED, or a fresh random one, and seeds
# bash's RANDOM with it, so that a scenario's draws repeat with CHAOS_SEED
chaos_seed() {
  seed=${CHAOS_SEED:-$((RANDOM * 32768 + RANDOM))}
  RANDOM=$seed
}

# chaos_short : true when the scenario runs in its bounded form (--short)
chaos_short() {
  [[ "${CHAOS_SHORT:-0}" == 1 ]]
}

# figure NAME VALUE... : print one figure line of a scenario
figure() {
  echo "figure: $*"
}

# ------------------------------------------------------------ ferry helpers

# chaos_api PATH : GET http://127.0.0.1:$FERRY_PORT PATH from the daemon's API
chaos_api() {
  curl -sf --max-time 5 "http://127.0.0.1:$FERRY_PORT$1"
}

# chaos_verify CONFIG : `ferry verify` (bounded); 0 when every destination
# matches; its output goes to $TEST_TMP/verify.out
chaos_verify() {
  timeout 120 "$(ferry_bin)" verify -c "$1" >"$TEST_TMP/verify.out" 2>&1
}

# chaos_wait_converged CONFIG TIMEOUT_S : until `ferry verify` is clean; 1 on timeout
chaos_wait_converged() {
  local config=$1 timeout=$2 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if chaos_verify "$config"; then
      return 0
    fi
    sleep 1
  done
  note "not converged after $timeout s: $(head -n 5 "$TEST_TMP/verify.out")"
  return 1
}

# chaos_idle : true when the daemon reports no backlog at any destination
chaos_idle() {
  local st
  st=$(chaos_api /v1/status) || return 1
  jq -e '[.destinations[].backlog] | add == 0' <<<"$st" >/dev/null
}

# chaos_failed_total : FAILED jobs since start, all destinations together
chaos_failed_total() {
  chaos_api /v1/status | jq '[.destinations[].failed_total] | add'
}

# chaos_push REPO TAG SEED [fixturegen options] : push an image to $src_ADDR, print its digest
chaos_push() {
  local repo=$1 tag=$2 seed=$3
  shift 3
  fixturegen push --registry "$src_ADDR" --repo "$repo" --tag "$tag" --seed "$seed" --compact "$@" |
    jq -r .digest
}

# ------------------------------------------------------------ the README row

# chaos_row FAULTS RESULT : the scenario's row of the README's Reliability
# table (chaos/run.sh all writes it), built from what it measured and
# asserted: call it once every assertion has passed, just before `pass`.
# Written to $CHAOS_ROW_DIR/NAME.row when run.sh set it; printed either way.
chaos_row() {
  local name=${TEST_NAME:-chaos}
  echo "row: | $name | $1 | $2 |"
  if [[ -n "${CHAOS_ROW_DIR:-}" ]]; then
    printf '| %s | %s | %s |\n' "$name" "$1" "$2" >"$CHAOS_ROW_DIR/$name.row"
  fi
}

# chaos_faults FAULTS : what the scenario is about to inflict (the FAULTS
# column), written before the run so that a failing scenario's row says it too
chaos_faults() {
  if [[ -n "${CHAOS_ROW_DIR:-}" ]]; then
    printf '%s\n' "$1" >"$CHAOS_ROW_DIR/${TEST_NAME:-chaos}.faults"
  fi
}

# chaos_num N : N with thousands separators (1606200 -> 1,606,200)
chaos_num() {
  LC_ALL=C awk -v n="$1" 'BEGIN { s = sprintf("%d", n); o = ""
    while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
    print s o }'
}

# chaos_millions N : N in millions with one decimal when at least a million ("2.0 million")
chaos_millions() {
  if (($1 >= 1000000)); then
    awk -v n="$1" 'BEGIN { printf "%.1f million\n", n / 1e6 }'
  else
    chaos_num "$1"
  fi
}

# chaos_failed_jobs CONFIG : how many job records in the journal are FAILED
# (the persisted job states, which a restart of the daemon keeps, unlike the
# API's counters since start)
chaos_failed_jobs() {
  local out
  # A journal that cannot be read is a failure, never "0 FAILED".
  out=$("$(ferry_bin)" journal -c "$1" jobs --state FAILED --json) ||
    fail "ferry journal jobs failed on $1"
  grep -c . <<<"$out" || true
}

# chaos_backwards PUSHES SEEN : the watcher's tag moves (SEEN: "DEST:rN DIGEST"
# lines, watch_tags.py) that went back in push order (PUSHES: "PREFIX/rN
# DIGEST" lines, oldest first), one line each; a digest never pushed is
# printed as unknown
chaos_backwards() {
  awk '
  NR == FNR { split($1, p, "/"); idx[p[2] " " $2] = ++count[p[2]]; next }
  {
    split($1, w, ":"); key = w[2] " " $2
    if (!(key in idx)) { print "unknown " $0; next }
    if (idx[key] <= last[$1]) print "backwards " $1 " to push " idx[key] " after push " last[$1]
    last[$1] = idx[key]
  }' "$1" "$2"
}
