# shellcheck shell=bash
# A NATS JetStream cluster on loopback for the cluster tests (Debian's
# nats-server), on top of lib.sh (which this sources: TEST_TMP, cleanup at
# exit; every server is tracked like any start_bg process and stopped by PID).
#
#   source "$(dirname "$0")/nats_lib.sh"
#   nats_cluster_start 3            # servers nats1 nats2 nats3, JetStream on
#   ... ferry with cluster: { servers: [$NATS_URLS] } ...
#   nats_server_kill 2              # kill -9 one server
#   nats_server_restart 2           # back, on its ports and its store
#
# nats_cluster_start N
#     starts N servers (1..5) named nats1..natsN on free loopback ports, each
#     with JetStream and its store in $TEST_TMP/nats/natsK, routes to every
#     other one, and an HTTP monitor; waits (at most 30 s) until every server
#     says JetStream is ready and the cluster has a meta leader. Sets
#     NATS_URLS (nats://127.0.0.1:P,... for a client), NATS_URL1..N,
#     NATS_MONITOR1..N (http://127.0.0.1:P), natsK_PID; logs in
#     $TEST_TMP/natsK.log. A server that finds one of its ports taken (by
#     another process since free_port) starts them all again on new ports,
#     up to 3 times.
# nats_cluster_stop              stop every server by PID and remove their
#                                stores: nats_cluster_start may run again
# nats_server_kill K [--term]    stop server K by PID (KILL, or TERM)
# nats_server_restart K          start server K again, as it was configured
# nats_wait_ready [K...]         wait until the servers (all: none named) have
#                                JetStream ready and a meta leader
# nats_jsz K [JQ_FILTER]         server K's /jsz (through jq -r)

if [[ -n "${_NATS_LIB_LOADED:-}" ]]; then
  return 0
fi
_NATS_LIB_LOADED=1
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

NATS_CLUSTER_NAME=ferrytest
declare -a _NATS_CLIENT=() _NATS_ROUTE=() _NATS_MON=()
_NATS_N=0

_nats_launch() { # K
  local k=$1 routes="" i
  for ((i = 1; i <= _NATS_N; i++)); do
    ((i == k)) && continue
    routes+="${routes:+,}nats://127.0.0.1:${_NATS_ROUTE[$i]}"
  done
  mkdir -p "$TEST_TMP/nats/nats$k"
  # exec: the tracked PID is the server's own.
  start_bg "nats$k" nats-server --jetstream --store_dir "$TEST_TMP/nats/nats$k" \
    --server_name "nats$k" --addr 127.0.0.1 --port "${_NATS_CLIENT[$k]}" \
    --http_port "${_NATS_MON[$k]}" --cluster_name "$NATS_CLUSTER_NAME" \
    --cluster "nats://127.0.0.1:${_NATS_ROUTE[$k]}" --routes "$routes"
}

# _nats_ready K : JetStream answers on server K and the cluster has a meta leader
_nats_ready() {
  local k=$1 jsz
  jsz=$(curl -fsS --max-time 2 "http://127.0.0.1:${_NATS_MON[$k]}/jsz" 2>/dev/null) || return 1
  [[ "$(jq -r '.meta_cluster.leader // empty' <<<"$jsz")" != "" ]] || return 1
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${_NATS_MON[$k]}/healthz?js-enabled-only=true"
}

nats_wait_ready() {
  local ks=("$@") k
  if ((${#ks[@]} == 0)); then
    for ((k = 1; k <= _NATS_N; k++)); do ks+=("$k"); done
  fi
  for k in "${ks[@]}"; do
    wait_until 30 _nats_ready "$k" || fail "NATS server nats$k: JetStream not ready within 30 s (log: $(tail -n 3 "$TEST_TMP/nats$k.log" | tr '\n' ' '))"
  done
}

# _nats_bind_lost : a server exited because one of its ports was taken since
# free_port found it free (another process got it first)
_nats_bind_lost() {
  local k
  for ((k = 1; k <= _NATS_N; k++)); do
    if ! _itest_alive "${_ITEST_PIDS[bg:nats$k]}" && grep -q 'address already in use' "$TEST_TMP/nats$k.log"; then
      return 0
    fi
  done
  return 1
}

# _nats_all_ready : every server is ready, or one lost a port (then 0 too:
# the caller asks _nats_bind_lost)
_nats_all_ready() {
  local k
  _nats_bind_lost && return 0
  for ((k = 1; k <= _NATS_N; k++)); do _nats_ready "$k" || return 1; done
}

nats_cluster_start() {
  local n=$1 k attempt
  [[ "$n" =~ ^[1-5]$ ]] || fail "nats_cluster_start: 1 to 5 servers, not '$n'"
  command -v nats-server >/dev/null || fail "nats-server is not installed (./build.sh installs it)"
  ((_NATS_N == 0)) || fail "nats_cluster_start: a cluster is already running"
  # Up to 3 tries: a port free_port found may be taken before a server binds it.
  for attempt in 1 2 3; do
    _NATS_N=$n
    NATS_URLS=""
    for ((k = 1; k <= n; k++)); do
      _NATS_CLIENT[$k]=$(free_port)
      _NATS_ROUTE[$k]=$(free_port)
      _NATS_MON[$k]=$(free_port)
      declare -g "NATS_URL$k=nats://127.0.0.1:${_NATS_CLIENT[$k]}"
      declare -g "NATS_MONITOR$k=http://127.0.0.1:${_NATS_MON[$k]}"
      NATS_URLS+="${NATS_URLS:+,}nats://127.0.0.1:${_NATS_CLIENT[$k]}"
    done
    for ((k = 1; k <= n; k++)); do _nats_launch "$k"; done
    wait_until 30 _nats_all_ready || true
    if ! _nats_bind_lost; then
      nats_wait_ready
      return 0
    fi
    note "NATS: a server's port was taken before it could listen; starting the cluster again ($attempt)"
    nats_cluster_stop
  done
  fail "NATS: no free ports after 3 tries"
}

nats_cluster_stop() {
  local k
  for ((k = 1; k <= _NATS_N; k++)); do
    if [[ -n "${_ITEST_PIDS[bg:nats$k]:-}" ]]; then
      stop_bg "nats$k"
    fi
  done
  rm -rf "${TEST_TMP:?}/nats"
  _NATS_N=0
}

nats_server_kill() {
  local k=$1 opt=--kill
  [[ "${2:-}" == "--term" ]] && opt=""
  # shellcheck disable=SC2086 # opt is empty or one word
  stop_bg "nats$k" $opt
}

nats_server_restart() {
  local k=$1
  _nats_launch "$k"
  nats_wait_ready "$k"
}

nats_jsz() {
  local k=$1 filter=${2:-.}
  curl -fsS --max-time 5 "http://127.0.0.1:${_NATS_MON[$k]}/jsz" | jq -r "$filter"
}
