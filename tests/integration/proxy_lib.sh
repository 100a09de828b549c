# shellcheck shell=bash
# The fault proxy (ferry-chaos-proxy, chaos/) for integration tests and chaos
# scenarios, on top of lib.sh (which this sources: TEST_TMP, cleanup at exit;
# the proxy is tracked like any start_bg process and stopped by PID).
#
#   source "$(dirname "$0")/proxy_lib.sh"
#   registry_start dst
#   proxy_start ecr "$dst_ADDR" --repo-gate 404 --repo-gate-allow base
#   ... push to $ecr_ADDR: repositories other than base answer NAME_UNKNOWN ...
#   proxy_repo_create ecr app       # as `aws ecr create-repository` would
#
# proxy_start NAME UPSTREAM_ADDR [ARG...]
#     starts the proxy in front of UPSTREAM_ADDR (host:port) on free loopback
#     ports, with its control endpoint, and waits (at most 10 s) until it
#     listens. Each ARG that starts with `-` is passed to the proxy as is,
#     with its value when the flag takes one (`--seed 42`, `--repo-gate 403`,
#     `--rule 'GET /x flip'`, `-v`); any other ARG is a rule (the same as
#     `--rule ARG`). Sets NAME_ADDR (127.0.0.1:PORT, what clients use),
#     NAME_PORT, NAME_CONTROL (http://127.0.0.1:PORT of the control endpoint),
#     NAME_PID; log in $TEST_TMP/NAME.log.
# proxy_stop NAME [--kill]              stop it by PID (TERM, or KILL)
# proxy_rules NAME put|post RULE...     replace the rules / add rules
# proxy_rules NAME delete               clear the rules
# proxy_stats NAME [JQ_FILTER]          GET /stats (through jq -r)
# proxy_fault_count NAME KIND           faults injected of KIND (status, flip, ...)
# proxy_repo_create NAME REPO           create REPO behind --repo-gate (POST /repositories)
# proxy_repos NAME [JQ_FILTER]          GET /repositories (through jq -r)
# chaos_proxy_bin                       the binary: $FERRY_CHAOS_PROXY, else next to ferry

if [[ -n "${_PROXY_LIB_LOADED:-}" ]]; then
  return 0
fi
_PROXY_LIB_LOADED=1
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

chaos_proxy_bin() {
  echo "${FERRY_CHAOS_PROXY:-$(dirname "$(ferry_bin)")/ferry-chaos-proxy}"
}

proxy_start() {
  local name=$1 upstream=$2
  shift 2
  _itest_valid_name "$name"
  local bin args=()
  bin=$(chaos_proxy_bin)
  [[ -x "$bin" ]] || fail "fault proxy not found at $bin (build it: ./build.sh)"
  while (($#)); do
    case $1 in
      -v | --verbose | -q | --quiet)
        args+=("$1")
        shift
        ;;
      --*=*)
        args+=("$1")
        shift
        ;;
      -*)
        (($# >= 2)) || fail "proxy_start $name: $1 wants a value"
        args+=("$1" "$2")
        shift 2
        ;;
      *)
        args+=(--rule "$1")
        shift
        ;;
    esac
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

proxy_stop() {
  stop_bg "$@"
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

proxy_repo_create() {
  local name=$1 repo=$2
  local control_var="${name}_CONTROL" code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --max-time 5 -G \
    --data-urlencode "name=$repo" "${!control_var}/repositories") ||
    fail "proxy_repo_create $name: control endpoint did not answer"
  [[ "$code" == 200 || "$code" == 201 ]] || fail "proxy_repo_create $name $repo: $code"
}

proxy_repos() {
  local name=$1 filter=${2:-.}
  local control_var="${name}_CONTROL"
  curl -sf --max-time 5 "${!control_var}/repositories" | jq -r "$filter"
}
