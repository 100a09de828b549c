# shellcheck shell=bash
# Helpers for the fault proxy, on top of tests/integration/lib.sh (which this
# sources: TEST_TMP, registries, cleanup at exit). Used by chaos/scenarios/*.sh
# and tests/integration/chaos_*_test.sh.
#
#   proxy_start NAME UPSTREAM_ADDR [--seed N] [RULE...]
#       starts build/ferry-chaos-proxy in front of UPSTREAM_ADDR on free ports;
#       sets NAME_ADDR (127.0.0.1:PORT, what clients use), NAME_PORT,
#       NAME_CONTROL (http://127.0.0.1:PORT of the control endpoint), NAME_PID
#   proxy_rules NAME put|post RULE...   replace the rules / add rules
#   proxy_rules NAME delete             clear the rules
#   proxy_stats NAME [JQ_FILTER]        GET /stats (through jq)
#   proxy_fault_count NAME KIND         faults injected of KIND (status, flip, ...)

if [[ -n "${_CHAOS_LIB_LOADED:-}" ]]; then
  return 0
fi
_CHAOS_LIB_LOADED=1
# shellcheck source=../tests/integration/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/lib.sh"

# chaos_proxy_bin : the proxy next to the ferry binary, or $FERRY_CHAOS_PROXY
chaos_proxy_bin() {
  echo "${FERRY_CHAOS_PROXY:-$(dirname "$(ferry_bin)")/ferry-chaos-proxy}"
}

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

proxy_start() {
  local name=$1 upstream=$2
  shift 2
  _itest_valid_name "$name"
  local bin args=()
  bin=$(chaos_proxy_bin)
  [[ -x "$bin" ]] || fail "fault proxy not found at $bin (build it: ./build.sh)"
  if [[ "${1:-}" == --seed ]]; then
    args+=(--seed "$2")
    shift 2
  fi
  local r
  for r in "$@"; do
    args+=(--rule "$r")
  done
  local ready="$TEST_TMP/$name.ready"
  rm -f "$ready"
  start_bg "$name" "$bin" --listen 127.0.0.1:0 --control 127.0.0.1:0 --upstream "$upstream" \
    --ready-file "$ready" "${args[@]}"
  local pid_var="${name}_PID"
  # shellcheck disable=SC2317 # called through wait_until
  _proxy_ready() { [[ -s "$ready" ]] || ! _itest_alive "${!pid_var}"; }
  wait_until 10 _proxy_ready || fail "proxy $name did not start in 10 s"
  [[ -s "$ready" ]] || fail "proxy $name exited: $(tail -n 3 "$TEST_TMP/$name.log")"
  local port control
  read -r port control <"$ready"
  declare -g "${name}_PORT=$port"
  declare -g "${name}_ADDR=127.0.0.1:$port"
  declare -g "${name}_CONTROL=http://127.0.0.1:$control"
}

proxy_rules() {
  local name=$1 verb=$2
  shift 2
  local control_var="${name}_CONTROL" body="" r
  for r in "$@"; do
    body+="$r"$'\n'
  done
  local method
  case $verb in
    put) method=PUT ;;
    post) method=POST ;;
    delete) method=DELETE ;;
    *) fail "proxy_rules: want put, post or delete, got '$verb'" ;;
  esac
  local out code
  out=$(curl -s -w '\n%{http_code}' -X "$method" --data-binary "$body" --max-time 5 "${!control_var}/rules") ||
    fail "proxy_rules $name: control endpoint did not answer"
  code=${out##*$'\n'}
  [[ "$code" == 200 ]] || fail "proxy_rules $name $verb: $code ${out%$'\n'*}"
}

proxy_stats() {
  local name=$1 filter=${2:-.}
  local control_var="${name}_CONTROL"
  curl -sf --max-time 5 "${!control_var}/stats" | jq -r "$filter"
}

proxy_fault_count() {
  proxy_stats "$1" ".faults.$2"
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
