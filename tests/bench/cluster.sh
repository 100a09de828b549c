#!/usr/bin/env bash
# shellcheck disable=SC2154 # src_ADDR, d1_PID, nats1_PID ... are set by lib.sh and nats_lib.sh
# Benchmark: Ferry as a cluster. `ferry serve` on its own RocksDB journal
# against nodes sharing one journal on NATS JetStream (3 nats-servers,
# replicas 3), all on loopback:
#
#   bash tests/bench/cluster.sh             (3 runs of every part: several minutes; builds ingest_load and ferry first)
#   BENCH_QUICK=1 BENCH_REPOS=2 BENCH_TAGS=2 BENCH_RUNS=1 BENCH_DURATION=3 \
#     BENCH_CLUSTER_CLIENTS=4 BENCH_FAILOVER_EVENTS=3 bash tests/bench/cluster.sh   (a check: about a minute)
#
# 1. Fleet. fleet.sh's fleet (fleetlib.sh) to 3 fresh destination registries
#    through three configurations, in turn within every run (they take turns
#    at going first): 1 node on RocksDB, 1 node on JetStream, 3 nodes on
#    JetStream. Each starts from nothing: fresh destinations, data_dirs and
#    JetStream (the servers stopped, their store removed, started again).
#    The nodes are started and see each other before the clock starts; the
#    clock runs from posting the fleet's notifications (one Distribution
#    envelope per image, as a registry sends for a push, the nodes in turn)
#    until every node's /v1/status shows no backlog at d1, d2, d3 and the
#    nodes' completed jobs add up to every image at each (polled every
#    100 ms). Then `ferry verify` and fleettool's tags/list + HEAD check must
#    find every tag at every destination, or the bench fails. Also measured:
#    the CPU of the nodes, the NATS servers and the registries, the source's
#    blob bytes read (each node reads into its own spool what the blob
#    hints leave it to read), start-up.
#    Notifications, not a poll round: fleet.sh's fresh figure is `ferry sync`,
#    which a cluster's config refuses; a poll round in a cluster is one node's
#    (the source's poller lease) and starts with the node, so its clock would
#    hold the start-up and could not spread the work it finds over the nodes.
# 2. Ingest. 3 JetStream nodes (replicas 3); one ingest_load per node, closed
#    loop, BENCH_CLUSTER_CLIENTS connections each, BENCH_DURATION seconds;
#    events/s = the three added up. The rule's source and destination are a
#    tarpit (it answers GET /v2/ and holds every other request), so that each
#    node's engine holds its max_concurrency jobs in flight and does nothing
#    else: the figure is the webhook path (parse, the node's committer
#    publishing in batches to JetStream, the servers' acks, 200). Then
#    `ferry journal ls --json` is checked event by event against every
#    request the load tools saw answered 200 (ingest_load --acked-file,
#    tests/tools/ingest_load_check.py): every acknowledged event in the
#    stream exactly once and in its connection's order, or the bench fails.
# 3. Failover. 3 JetStream nodes, ack_wait 3 s (as in every part:
#    BENCH_CLUSTER_ACK_WAIT); BENCH_FAILOVER_EVENTS images
#    (one small image per repository) are notified to the nodes in turn, for
#    a destination that is a tarpit (stall_timeout 1h, max_concurrency 64):
#    every job hangs in flight, its entry held by its node and kept alive.
#    The node holding the most is killed with -9; failover = from the kill
#    until the survivors' backlog at that destination (their own /v1/status,
#    polled every 50 ms) holds every entry again, i.e. until the servers
#    gave the dead node's entries to the others (after the ack wait) and
#    they took them.
#
# Every figure is a median of BENCH_RUNS runs; the parts run in turn within
# a run. Targets (PASS/MISS, computed here; a MISS does not change the exit
# status): fleet wall JetStream ÷ RocksDB ≤ 1.3× for 1 and for 3 nodes (on
# 2 cores no speed-up is expected from 3 nodes: the target is JetStream's
# overhead); ingest ≥ 5,000 events/s; failover ≤ 2 × ack_wait.
#
# Environment:
#   BENCH_RUNS=3                runs of every part
#   BENCH_QUICK, BENCH_REPOS, BENCH_TAGS   the fleet's size (fleetlib.sh: 40 x 5; quick 8 x 3)
#   BENCH_DURATION=10           seconds of load per ingest run (at most 120)
#   BENCH_CLUSTER_CLIENTS=32    connections per node in the ingest part
#   BENCH_FAILOVER_EVENTS=6     images in flight in the failover part
#   BENCH_CLUSTER_PARTS="fleet ingest failover"   the parts to run (all for BENCH_README)
#   BENCH_CLUSTER_ACK_WAIT=3    the cluster's ack_wait in seconds, every part (3 or more)
#   BENCH_TIMEOUT=600           seconds allowed per fleet run
#   BENCH_README=FILE           write the report between FILE's bench:cluster markers
#                               (./build.sh bench: README.md); needs BENCH_RUNS >= 3
#   BENCH_OUT=FILE              Markdown report (default build/bench/cluster.md)
#   FERRY_BIN, INGEST_LOAD      binaries (default build/ferry, build/ingest_load; copies are run)
#   KEEP_TMP=1                  keep storage, stores and logs (build/bench/itest.*)
#
# Exit status: 0 when every run succeeded and checked out (targets missed or
# not); 1 when a run failed, timed out, did not verify or lost an event: at
# once, with the FAIL line and no report and no README block.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build_dir="$top/build"
bench_root="${FERRY_BUILD_DIR:-$build_dir}/bench"
mkdir -p "$bench_root"

export FERRY_SOURCE_DIR="$top"
# shellcheck source=SCRIPTDIR/benchlib.sh
source "$top/tests/bench/benchlib.sh"
# Build first, before lib.sh makes its temp dir: a failed build leaves nothing behind.
bench_build_tools "$bench_root/cluster-build.log"

export FERRY_BUILD_DIR="$bench_root"
# shellcheck source=SCRIPTDIR/../integration/nats_lib.sh
source "$top/tests/integration/nats_lib.sh"
# shellcheck source=SCRIPTDIR/fleetlib.sh
source "$top/tests/bench/fleetlib.sh"

fleet_size_options
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLUSTER_CLIENTS:-32}
FO_EVENTS=${BENCH_FAILOVER_EVENTS:-6}
TIMEOUT=${BENCH_TIMEOUT:-600}
OUT=${BENCH_OUT:-$bench_root/cluster.md}
read -r -a PARTS <<<"${BENCH_CLUSTER_PARTS:-fleet ingest failover}"
for v in RUNS DURATION CLIENTS FO_EVENTS TIMEOUT; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || fail "$v must be a positive integer, got '${!v}'"
done
((DURATION <= 120)) || fail "BENCH_DURATION must be at most 120 seconds"
((CLIENTS <= 170)) || fail "BENCH_CLUSTER_CLIENTS must be at most 170 (3 load tools, 512 connections)"
((FO_EVENTS <= 64)) || fail "BENCH_FAILOVER_EVENTS must be at most 64 (the destination's max_concurrency)"
declare -A PART=()
for p in "${PARTS[@]}"; do
  [[ $p == fleet || $p == ingest || $p == failover ]] || fail "BENCH_CLUSTER_PARTS: no part '$p' (fleet, ingest, failover)"
  PART[$p]=1
done
((${#PART[@]} > 0)) || fail "BENCH_CLUSTER_PARTS names no part"
if [[ -n "${BENCH_README:-}" ]] && ((${#PART[@]} < 3)); then
  fail "BENCH_README: the block holds every part; BENCH_CLUSTER_PARTS leaves some out"
fi
bench_readme_check cluster "$RUNS"
for t in curl jq python3 docker-registry nats-server timeout; do
  command -v "$t" >/dev/null || fail "bench needs $t"
done

# Snapshots: a rebuild during the bench must not mix binaries.
require_ferry
FERRY="$TEST_TMP/ferry"
LOAD="$TEST_TMP/ingest_load"
cp "$(ferry_bin)" "$FERRY"
cp "${INGEST_LOAD:-$build_dir/ingest_load}" "$LOAD"
export FERRY_BIN="$FERRY"
FERRY_SHA=$(sha256sum "$FERRY" | cut -c1-12)
CHECK="$top/tests/tools/ingest_load_check.py"
TOKEN=bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export FERRY_WEBHOOK_TOKEN=$TOKEN
CLK_TCK=$(getconf CLK_TCK)

# Targets.
T_RATIO=1.3     # fleet wall, JetStream ÷ RocksDB <=
T_EPS=5000      # ingest events/s >=
ACK_WAIT_S=${BENCH_CLUSTER_ACK_WAIT:-3} # the cluster's ack_wait in every part, s
if [[ ! "$ACK_WAIT_S" =~ ^[1-9][0-9]*$ ]] || ((ACK_WAIT_S < 3)); then
  fail "BENCH_CLUSTER_ACK_WAIT must be whole seconds, 3 or more"
fi
T_FAILOVER=$((2 * ACK_WAIT_S)) # failover s <=

bench_start=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ODD="$TEST_TMP/odd.txt" # what the nodes logged besides their start, for the report
: >"$ODD"

# ------------------------------------------------------------------ helpers

ticks() { # PID... : their user+sys clock ticks added up (0 for one gone)
  local p s=0
  for p in "$@"; do s=$((s + $(cpu_ticks "$p"))); done
  echo "$s"
}
secs() { calc "$1 / $CLK_TCK"; } # TICKS -> seconds
last() { awk '{ print $NF }' <<<"$1"; } # "a b c" -> c

# nats_fresh : a JetStream cluster of 3 servers with empty stores
nats_fresh() {
  nats_cluster_stop
  nats_cluster_start 3
}
nats_pids() { echo "$nats1_PID $nats2_PID $nats3_PID"; }
# nats_msgs : messages the servers took in so far (clients and routes), added up
nats_msgs() {
  local k s=0
  for k in 1 2 3; do s=$((s + $(nats_varz_in_msgs "$k"))); done
  echo "$s"
}
nats_varz_in_msgs() { local v="NATS_MONITOR$1"; curl -fsS --max-time 5 "${!v}/varz" | jq -r .in_msgs; }

# The nodes of a configuration: node1..nodeN, started by lib.sh's
# ferry_serve_start as processes node1..nodeN, their configs
# $TEST_TMP/LABEL-nodeK.yaml, data_dirs $TEST_TMP/LABEL-dataK.
declare -a NODE_API=() NODE_CFG=()
N_NODES=0
NODES_LABEL=""

# nodes_config LABEL N JOURNAL BODY : write the configs of N nodes on JOURNAL
# (rocksdb or jetstream), BODY their registries: and rules: (YAML)
nodes_config() {
  local label=$1 n=$2 journal=$3 body=$4 k port servers
  servers=$(tr ',' '\n' <<<"${NATS_URLS:-}" | sed 's/.*/"&"/' | paste -sd, -)
  NODE_API=() NODE_CFG=()
  for ((k = 1; k <= n; k++)); do
    port=$(free_port)
    NODE_API[k]="http://127.0.0.1:$port"
    NODE_CFG[k]="$TEST_TMP/$label-node$k.yaml"
    rm -rf "$TEST_TMP/$label-data$k"
    {
      echo "data_dir: $TEST_TMP/$label-data$k"
      echo "listen: 127.0.0.1:$port"
      echo "webhook_token_env: FERRY_WEBHOOK_TOKEN"
      echo "poll_interval: 0"
      if [[ $journal == jetstream ]]; then
        echo "cluster:"
        echo "  servers: [$servers]"
        echo "  name: node$k"
        echo "  replicas: 3"
        echo "  ack_wait: ${ACK_WAIT_S}s"
      fi
      echo "$body"
    } >"${NODE_CFG[k]}"
  done
  N_NODES=$n
  NODES_LABEL=$label
}

node_pid() { local v="node${1}_PID"; echo "${!v}"; }
node_pids() {
  local k
  for ((k = 1; k <= N_NODES; k++)); do node_pid "$k"; done | paste -sd' ' -
}

# nodes_alive : every node's /v1/status has every node alive (a cluster), or answers (one node on RocksDB)
nodes_alive() {
  local k n
  for ((k = 1; k <= N_NODES; k++)); do
    n=$(curl -sf --max-time 2 "${NODE_API[k]}/v1/status" | jq -r '.cluster.alive // 1') || return 1
    ((n == N_NODES)) || return 1
  done
}

# nodes_start : start the configured nodes one after another; sets START_S
# (from the first launch until every node answers and sees every node)
nodes_start() {
  local k t0
  t0=$EPOCHREALTIME
  for ((k = 1; k <= N_NODES; k++)); do
    ferry_serve_start "node$k" "${NODE_CFG[k]}" "${NODE_API[k]##*:}"
  done
  wait_until 60 nodes_alive || fail "$NODES_LABEL: the nodes did not see each other within 60 s: $(curl -sf --max-time 2 "${NODE_API[1]}/v1/status" | jq -c .cluster)"
  START_S=$(calc "$EPOCHREALTIME - $t0")
}

# nodes_stop [--kill] : stop every node still running (TERM, or KILL), at once;
# their logs are kept as LABEL-nodeK.log, and what they logged besides their
# start goes to the report
nodes_stop() {
  local sig=TERM k pids=()
  [[ "${1:-}" == --kill ]] && sig=KILL
  for ((k = 1; k <= N_NODES; k++)); do
    if [[ -n "${_ITEST_PIDS[bg:node$k]:-}" ]]; then
      pids+=("${_ITEST_PIDS[bg:node$k]}")
      unset "_ITEST_PIDS[bg:node$k]"
      [[ $sig == TERM ]] || disown "${pids[-1]}" # no "Killed" notice from bash
    fi
  done
  ((${#pids[@]} == 0)) || _itest_stop_pids "$sig" "${pids[@]}"
  for ((k = 1; k <= N_NODES; k++)); do
    [[ -f "$TEST_TMP/node$k.log" ]] || continue
    grep -vE '^ferry: serving on |warn stopping signal=TERM: draining accepted events$|^$' "$TEST_TMP/node$k.log" |
      sed "s/^/$NODES_LABEL node$k: /" >>"$ODD" || true
    mv "$TEST_TMP/node$k.log" "$TEST_TMP/$NODES_LABEL-node$k.log"
  done
}

# events_urls : --url options for every node's webhook of source src
events_urls() {
  local k
  for ((k = 1; k <= N_NODES; k++)); do printf -- '--url\n%s/v1/events/src\n' "${NODE_API[k]}"; done
}
# status_urls [SKIP] : --url options for every node's API but node SKIP's
status_urls() {
  local k
  for ((k = 1; k <= N_NODES; k++)); do
    ((k == ${1:-0})) || printf -- '--url\n%s\n' "${NODE_API[k]}"
  done
}

# The tarpit: a registry that answers GET /v2/ and holds everything else.
start_bg tarpit python3 "$TOOL" tarpit --port-file "$TEST_TMP/tarpit.port" --log "$TEST_TMP/tarpit.log"
wait_until 10 test -s "$TEST_TMP/tarpit.port" || fail "the tarpit did not start: $(cat "$TEST_TMP/tarpit.log")"
TARPIT="127.0.0.1:$(cat "$TEST_TMP/tarpit.port")"

# ------------------------------------------------------------------ fleet

CONFIGS=(rdb1 js1 js3)
config_name() {
  case $1 in
    rdb1) echo "RocksDB, 1 node" ;;
    js1) echo "JetStream, 1 node" ;;
    js3) echo "JetStream, 3 nodes" ;;
  esac
}
declare -A F=()  # F[CONFIG,METRIC]: one value per run, "a b c"
declare -A FL=() # FL[CONFIG,METRIC]: the last run's text

# fleet_body : the nodes' registries and rule for the destinations as they
# are now (fresh_dst moves them to new ports), into FLEET_BODY and
# verify.yaml (`ferry verify` needs no journal: one node, no cluster:)
fleet_body() {
  local d a
  FLEET_BODY=$(
    echo "registries:"
    echo "  src: { url: \"http://$src_ADDR\", poll: false }"
    for d in d1 d2 d3; do
      a="${d}_ADDR"
      echo "  $d: { url: \"http://${!a}\" }"
    done
    echo "rules:"
    echo "  - { name: fleet, source: src, repositories: [\"fleet-*\"], destinations: [{ registry: d1 }, { registry: d2 }, { registry: d3 }] }"
  )
  printf 'data_dir: %s\n%s\n' "$TEST_TMP/verify-data" "$FLEET_BODY" >"$TEST_TMP/verify.yaml"
}

# fleet_run CONFIG RUN : one measured run of the fleet to fresh d1, d2, d3
fleet_run() {
  local c=$1 n=1 journal=jetstream label="fleet-$1-$2"
  [[ $c == js3 ]] && n=3
  [[ $c == rdb1 ]] && journal=rocksdb
  fresh_dst d1 d2 d3
  if [[ $journal == jetstream ]]; then nats_fresh; else nats_cluster_stop; fi
  fleet_body
  nodes_config "$label" "$n" "$journal" "$FLEET_BODY"
  nodes_start
  local nodes nats="" regs c0 n0 r0 urls=() waiter t0 notify_s out wall
  nodes=$(node_pids)
  [[ $journal == jetstream ]] && nats=$(nats_pids)
  regs="$src_PID $d1_PID $d2_PID $d3_PID"
  # shellcheck disable=SC2086 # lists of pids
  {
    c0=$(ticks $nodes)
    n0=$(ticks $nats)
    r0=$(ticks $regs)
  }
  local src_off
  src_off=$(log_lines src) # the source's requests from here on are the run's
  # The watcher first, so that its start is not on the clock.
  mapfile -t urls < <(status_urls)
  python3 "$TOOL" status-wait "${urls[@]}" --dest d1 --dest d2 --dest d3 --until "completed:$n_images" \
    --every 0.1 --timeout "$TIMEOUT" >"$TEST_TMP/$label.wait" &
  waiter=$!
  mapfile -t urls < <(events_urls)
  t0=$EPOCHREALTIME
  if ! tool notify "${urls[@]}" --token "$TOKEN" --prefix "$label" "$TEST_TMP/fleet.jsonl" >"$TEST_TMP/$label.notify"; then
    kill "$waiter" 2>/dev/null || true
    fail "$(config_name "$c"): posting the notifications failed: $(cat "$TEST_TMP/$label.notify")"
  fi
  notify_s=$(calc "$EPOCHREALTIME - $t0")
  wait "$waiter" || fail "$(config_name "$c"): the fleet was not replicated within $TIMEOUT s: $(cat "$TEST_TMP/$label.wait")"
  out=$(cat "$TEST_TMP/$label.wait")
  wall=$(calc "$(jq -r .at <<<"$out") - $t0")
  # shellcheck disable=SC2086
  {
    F[$c,ferry_cpu]+="$(secs $(($(ticks $nodes) - c0))) "
    F[$c,nats_cpu]+="$(secs $(($(ticks $nats) - n0))) "
    F[$c,reg_cpu]+="$(secs $(($(ticks $regs) - r0))) "
  }
  F[$c,wall]+="$wall "
  F[$c,start]+="$START_S "
  F[$c,notify]+="$notify_s "
  # What the source served meanwhile: each node reads into its own spool
  # what its jobs need and the blob hints leave it to read.
  local src_stats
  src_stats=$(log_lines src >/dev/null && tool logstats --log "${_REG_LOG[src]}" --offset "$src_off" "${FLEET_FILES[@]}")
  F[$c,src_read]+="$(calc "$(jq -r .blob_get_bytes <<<"$src_stats") / $UNIQUE") "
  F[$c,src_req]+="$(jq -r .requests <<<"$src_stats") "
  FL[$c,per_node]=$(jq -r '[.nodes[] | [.dests[].completed] | add | tostring] | join(" / ")' <<<"$out")
  FL[$c,failed]=$(jq -r '[.nodes[].dests[].failed_total] | add' <<<"$out")
  FL[$c,retries]=$(jq -r '[.nodes[].dests[].retries] | add' <<<"$out")
  nodes_stop
  # Verified two ways: ferry verify (every child and blob, as the rule
  # copies them) and every tag's digest by tags/list + HEAD (fleettool).
  "$FERRY" verify -c "$TEST_TMP/verify.yaml" >"$TEST_TMP/$label.verify" 2>&1 ||
    fail "$(config_name "$c"): ferry verify found drift after the run: $(head -n 5 "$TEST_TMP/$label.verify")"
  verify_dst "$(config_name "$c")" d1 d2 d3
  say "$(config_name "$c"): wall $(fmt '%.2f' "$wall") s, CPU s: ferry $(last "${F[$c,ferry_cpu]}"), NATS $(last "${F[$c,nats_cpu]}"), registries $(last "${F[$c,reg_cpu]}"); source blob bytes read $(fmt '%.2f' "$(last "${F[$c,src_read]}")")× unique; start-up $(fmt '%.2f' "$START_S") s; jobs per node ${FL[$c,per_node]}"
}

# ------------------------------------------------------------------ ingest

declare -A I=() # I[METRIC]: one value per run
# The source and the destination are the tarpit (the destination's
# repositories renamed, or the rule would copy each onto itself): a job hangs
# at its first request, whichever end it asks first.
INGEST_BODY="registries:
  src: { url: \"http://$TARPIT\", poll: false, stall_timeout: 1h }
  dst: { url: \"http://$TARPIT\", stall_timeout: 1h }
rules:
  - { name: bench, source: src, repositories: [\"**\"], destinations: [{ registry: dst, repository: \"copy/{repo}\" }] }"

# ingest_run RUN : one ingest_load per node at once, then the journal check
ingest_run() {
  local label="ingest-$1" k pids=() rc nodes nats c0 n0 checks=() out
  nats_fresh
  nodes_config "$label" 3 jetstream "$INGEST_BODY"
  nodes_start
  nodes=$(node_pids)
  nats=$(nats_pids)
  # shellcheck disable=SC2086
  {
    c0=$(ticks $nodes)
    n0=$(ticks $nats)
  }
  local m0
  m0=$(nats_msgs)
  for ((k = 1; k <= N_NODES; k++)); do
    timeout $((DURATION + 30)) "$LOAD" --url "${NODE_API[k]}/v1/events/src" --token "$TOKEN" \
      --clients "$CLIENTS" --duration "$DURATION" --run-id "$label-n$k" --json \
      --acked-file "$TEST_TMP/$label-n$k.acked" >"$TEST_TMP/$label-n$k.json" 2>"$TEST_TMP/$label-n$k.err" &
    pids+=($!)
    checks+=(--load "$label-n$k:10:$TEST_TMP/$label-n$k.acked")
  done
  for ((k = 1; k <= N_NODES; k++)); do
    rc=0
    wait "${pids[k - 1]}" || rc=$?
    ((rc == 0)) || fail "$label: ingest_load against node$k exited $rc: $(cat "$TEST_TMP/$label-n$k.err")"
  done
  # shellcheck disable=SC2086
  {
    I[ferry_cpu]+="$(secs $(($(ticks $nodes) - c0))) "
    I[nats_cpu]+="$(secs $(($(ticks $nats) - n0))) "
  }
  I[nats_msgs]+="$(($(nats_msgs) - m0)) "
  for ((k = 1; k <= N_NODES; k++)); do
    _itest_alive "$(node_pid "$k")" || fail "$label: node$k exited during the load"
  done
  # The cluster's journal as any node reads it, checked event by event.
  timeout 600 "$FERRY" journal -c "${NODE_CFG[1]}" ls --json >"$TEST_TMP/$label.journal" 2>"$TEST_TMP/$label.journal.err" ||
    fail "$label: ferry journal ls failed: $(tail -n 3 "$TEST_TMP/$label.journal.err")"
  rc=0
  python3 "$CHECK" "$TEST_TMP/$label.journal" "${checks[@]}" >"$TEST_TMP/$label.check" 2>"$TEST_TMP/$label.check.err" || rc=$?
  nodes_stop --kill # their engines hold jobs the tarpit never answers
  out=$(jq -s '{eps: (map(.events_per_s) | add), events: (map(.events) | add), requests: (map(.requests) | add),
      errors: (map(.errors) | add), p50: (map(.p50_ms) | max), p99: (map(.p99_ms) | max), max: (map(.max_ms) | max),
      load_cpu: (map(.cpu_s) | add), elapsed: (map(.elapsed_s) | max)}' "$TEST_TMP/$label"-n*.json)
  say "$label: $(jq -c . <<<"$out"); NATS messages in: $(last "${I[nats_msgs]}"); journal check: $(cat "$TEST_TMP/$label.check")"
  if ((rc != 0)); then
    echo "FAIL: $label: the journal does not hold every acknowledged event exactly once, in order:" >&2
    head -n 10 "$TEST_TMP/$label.check.err" >&2
    fail "an acknowledged event was lost, doubled or misplaced: no figures"
  fi
  local m
  for m in eps events requests errors p50 p99 max load_cpu elapsed; do I[$m]+="$(jq -r ".$m" <<<"$out") "; done
  for m in entries acked load_journaled other_entries; do I[$m]+="$(jq -r ".$m" "$TEST_TMP/$label.check") "; done
}

# ---------------------------------------------------------------- failover

declare -A FO=() # FO[METRIC]: one value per run

# failover_run RUN : FO_EVENTS jobs hang in flight; the node holding most is killed
failover_run() {
  local label="failover-$1" urls=() out k n victim=0 held=0 pid t0 jobs_out
  nats_fresh
  nodes_config "$label" 3 jetstream "registries:
  src: { url: \"http://$src_ADDR\", poll: false }
  slow: { url: \"http://$TARPIT\", max_concurrency: 64, stall_timeout: 1h }
rules:
  - { name: failover, source: src, repositories: [\"failover-*\"], destinations: [{ registry: slow }] }"
  nodes_start
  mapfile -t urls < <(events_urls)
  tool notify "${urls[@]}" --token "$TOKEN" --prefix "$label" "$TEST_TMP/failover.jsonl" >"$TEST_TMP/$label.notify" ||
    fail "$label: posting the notifications failed: $(cat "$TEST_TMP/$label.notify")"
  mapfile -t urls < <(status_urls)
  tool status-wait "${urls[@]}" --dest slow --until "inflight:$FO_EVENTS" --every 0.05 --timeout 30 >"$TEST_TMP/$label.before" ||
    fail "$label: the $FO_EVENTS jobs were not all in flight within 30 s: $(cat "$TEST_TMP/$label.before")"
  sleep 1 # the kill falls anywhere in the nodes' keep-alive period
  local per=""
  for ((k = 1; k <= N_NODES; k++)); do
    n=$(curl -sf --max-time 5 "${NODE_API[k]}/v1/status" | jq '[.destinations[] | select(.name == "slow") | .in_flight] | add // 0')
    per+="${per:+/}$n"
    if ((n > held)); then held=$n victim=$k; fi
  done
  FO[per_node]+="$per "
  ((victim > 0)) || fail "$label: no node holds a job in flight"
  pid=$(node_pid "$victim")
  mapfile -t urls < <(status_urls "$victim")
  unset "_ITEST_PIDS[bg:node$victim]"
  disown "$pid" # no "Killed" notice from bash
  t0=$EPOCHREALTIME
  kill -KILL "$pid"
  tool status-wait "${urls[@]}" --dest slow --until "backlog:$FO_EVENTS" --every 0.05 --timeout 60 >"$TEST_TMP/$label.after" ||
    fail "$label: the survivors did not take node$victim's $held entries within 60 s: $(cat "$TEST_TMP/$label.after")"
  out=$(cat "$TEST_TMP/$label.after")
  FO[seconds]+="$(calc "$(jq -r .at <<<"$out") - $t0") "
  FO[first]+="$(jq -r --arg t0 "$t0" 'if .first_change_at then .first_change_at - ($t0 | tonumber) else "-" end' <<<"$out") "
  FO[held]+="$held "
  # The job records: every one should name a survivor now.
  local survivor=1
  ((victim == 1)) && survivor=2
  jobs_out=$(timeout 30 "$FERRY" journal -c "${NODE_CFG[survivor]}" jobs --dest slow --json 2>/dev/null || true)
  FO[records_victim]+="$(jq -s --arg v "node$victim" '[.[] | select(.node == $v)] | length' <<<"$jobs_out") "
  say "$label: jobs in flight per node $per; node$victim killed, its $held entries all taken after $(fmt '%.2f' "$(last "${FO[seconds]}")") s (the first after $(fmt '%.2f' "$(last "${FO[first]}")") s)"
  nodes_stop --kill
}

# -------------------------------------------------------------------- runs

if [[ -n "${PART[fleet]:-}" ]]; then
  fleet_push
else
  registry_start src
fi
if [[ -n "${PART[failover]:-}" ]]; then
  mkdir -p "$TEST_TMP/failover"
  for ((k = 0; k < FO_EVENTS; k++)); do
    fixturegen push --registry "$src_ADDR" --repo "$(printf 'failover-%02d' "$k")" --tag v1 --seed "failover-$k" \
      --layers 1 --layer-size 16K --compact >"$TEST_TMP/failover/$k.json" || fail "could not push failover image $k"
  done
  cat "$TEST_TMP"/failover/*.json >"$TEST_TMP/failover.jsonl"
fi

say "ferry $(bench_commit) (binary sha256 $FERRY_SHA), $(nproc) cores, parts: ${PARTS[*]}, $RUNS run(s)"
for ((ITER = 1; ITER <= RUNS; ITER++)); do
  ((RUNS > 1)) && say "---- run $ITER of $RUNS"
  if [[ -n "${PART[fleet]:-}" ]]; then
    rot=$(((ITER - 1) % ${#CONFIGS[@]}))
    order=("${CONFIGS[@]:rot}" "${CONFIGS[@]:0:rot}")
    ORDERS+="${ORDERS:+; }run $ITER: $(for c in "${order[@]}"; do config_name "$c"; done | paste -sd'>' | sed 's/>/ → /g')"
    for c in "${order[@]}"; do fleet_run "$c" "$ITER"; done
    for c in js1 js3; do
      F[$c,ratio]+="$(calc "$(last "${F[$c,wall]}") / $(last "${F[rdb1,wall]}")") "
    done
  fi
  [[ -z "${PART[ingest]:-}" ]] || ingest_run "$ITER"
  [[ -z "${PART[failover]:-}" ]] || failover_run "$ITER"
done
nats_cluster_stop

# ------------------------------------------------------------------ report

med() { median "$1"; }                                      # "a b c" -> median
m2() { fmt '%.2f' "$(median "$1")"; }                      # median, 2 decimals
runs2() { awk '{ for (i = 1; i <= NF; i++) printf (i > 1 ? " / " : "") "%.2f", $i; print "" }' <<<"$1"; }
target() { echo "- $1: **$2**"; } # TEXT VERDICT

fleet_md=""
if [[ -n "${PART[fleet]:-}" ]]; then
  for c in "${CONFIGS[@]}"; do F[$c,cpu_all]=""; done
  for c in "${CONFIGS[@]}"; do
    read -r -a fc <<<"${F[$c,ferry_cpu]}"
    read -r -a nc <<<"${F[$c,nats_cpu]}"
    read -r -a rc_ <<<"${F[$c,reg_cpu]}"
    for ((i = 0; i < ${#fc[@]}; i++)); do F[$c,cpu_all]+="$(calc "${fc[i]} + ${nc[i]} + ${rc_[i]}") "; done
  done
  r1=$(calc "$(med "${F[js1,wall]}") / $(med "${F[rdb1,wall]}")")
  r3=$(calc "$(med "${F[js3,wall]}") / $(med "${F[rdb1,wall]}")")
  frow() { # LABEL METRIC [FORMAT] : the three configurations' medians
    local f=${3:-%.2f}
    printf '| %s | %s | %s | %s |\n' "$1" "$(fmt "$f" "$(med "${F[rdb1,$2]}")")" \
      "$(fmt "$f" "$(med "${F[js1,$2]}")")" "$(fmt "$f" "$(med "${F[js3,$2]}")")"
  }
  fleet_md=$(
    echo "### fleet to 3 destinations: 1 node on RocksDB, 1 node on JetStream, 3 nodes on JetStream"
    echo
    fleet_describe
    echo
    echo "Each configuration starts from nothing in every run: fresh destination registries d1, d2, d3, fresh \`data_dir\`s, and for JetStream a fresh NATS cluster. Its nodes are started and see each other before the clock starts. The clock runs from posting the fleet's notifications — one Distribution envelope per image, as a registry sends for a push, to the nodes in turn (with 3 nodes each takes a third) — until every node's \`/v1/status\` shows no backlog at d1, d2 and d3 and the nodes' completed jobs add up to every image at each (polled every 100 ms). Then \`ferry verify\` and a tags/list + HEAD of every tag at every destination must find the fleet, or the bench fails. Notifications, not a poll round: fleet.sh's fresh figure is \`ferry sync\`, which a cluster's config refuses, and a poll round in a cluster is one node's (it holds the source's poller lease) and starts with it, so its clock would hold the start-up. One rule \`[\"fleet-*\"]\` from src to d1, d2, d3, defaults otherwise. The configurations take turns at going first ($ORDERS)."
    echo
    echo "| medians of $RUNS run(s) | RocksDB, 1 node | JetStream, 1 node | JetStream, 3 nodes |"
    echo "| --- | ---: | ---: | ---: |"
    frow "wall s" wall
    printf '| wall ÷ RocksDB'"'"'s | 1.00× | %s | %s |\n' "$(fmt '%.2f×' "$r1")" "$(fmt '%.2f×' "$r3")"
    printf '| wall s, each run | %s | %s | %s |\n' "$(runs2 "${F[rdb1,wall]}")" "$(runs2 "${F[js1,wall]}")" "$(runs2 "${F[js3,wall]}")"
    printf '| wall ÷ RocksDB'"'"'s in the same run, each run | | %s | %s |\n' "$(runs2 "${F[js1,ratio]}")" "$(runs2 "${F[js3,ratio]}")"
    frow "source blob bytes read ÷ unique (the source's access log; each node reads into its own spool what no other node claimed)" src_read '%.3f'
    frow "requests to the source" src_req '%.0f'
    frow "Ferry's CPU s (all nodes, user+sys)" ferry_cpu
    printf '| NATS servers'"'"' CPU s | — | %s | %s |\n' "$(m2 "${F[js1,nats_cpu]}")" "$(m2 "${F[js3,nats_cpu]}")"
    frow "registries' CPU s (src, d1, d2, d3)" reg_cpu
    frow "CPU s, all of them ($(nproc) cores: $(nproc) CPU s per wall s)" cpu_all
    frow "start-up s (first launch → every node answers and sees every node; not on the clock)" start
    frow "posting the notifications s (on the clock)" notify
    printf '| jobs completed per node, d1+d2+d3 (last run) | %s | %s | %s |\n' "${FL[rdb1,per_node]}" "${FL[js1,per_node]}" "${FL[js3,per_node]}"
    printf '| jobs failed / retries (last run) | %s / %s | %s / %s | %s / %s |\n' "${FL[rdb1,failed]}" "${FL[rdb1,retries]}" \
      "${FL[js1,failed]}" "${FL[js1,retries]}" "${FL[js3,failed]}" "${FL[js3,retries]}"
    echo
    target "JetStream, 1 node: wall ≤ ${T_RATIO}× the RocksDB node's ($(fmt '%.2f' "$r1")×)" "$(verdict_le "$r1" "$T_RATIO")"
    target "JetStream, 3 nodes: wall ≤ ${T_RATIO}× the RocksDB node's ($(fmt '%.2f' "$r3")×; on $(nproc) cores no speed-up is expected, the target is JetStream's overhead)" "$(verdict_le "$r3" "$T_RATIO")"
  )
fi

ingest_md=""
if [[ -n "${PART[ingest]:-}" ]]; then
  eps=$(med "${I[eps]}")
  read -r -a el <<<"${I[elapsed]}"
  cpu_pct() { # METRIC -> the median over the runs of METRIC's percent of one core
    local v out="" i=0
    for v in ${I[$1]}; do out+="$(calc "100 * $v / ${el[i]}") "; i=$((i + 1)); done
    fmt '%.0f %%' "$(med "$out")"
  }
  ingest_md=$(
    echo "### webhook ingest through JetStream: 3 nodes, replicas 3"
    echo
    echo "A fresh NATS cluster and 3 nodes in every run; one \`ingest_load\` (ingest.sh's load tool) per node at once, closed loop, $CLIENTS connections each, ${DURATION} s, envelopes of 10 Distribution push events; events/s = the three added up. Each node journals its webhook events through its committer, which publishes them to JetStream in batches and answers 200 once the servers acked every one. The rule's source and destination are a tarpit (it answers \`GET /v2/\` and holds every other request unanswered), so each node's engine keeps its \`max_concurrency\` jobs in flight and does nothing else: the figure is the ingest path. After each run \`ferry journal ls --json\` is checked event by event against every request the load tools saw answered 200 (\`ingest_load --acked-file\`, \`tests/tools/ingest_load_check.py\`): every acknowledged event in the stream exactly once and in each connection's order, or the bench fails."
    echo
    echo "| metric | median of $RUNS run(s) | each run |"
    echo "| --- | ---: | --- |"
    printf '| events/s, 3 nodes together | %.0f | %s |\n' "$eps" "$(awk '{ for (i = 1; i <= NF; i++) printf (i > 1 ? " / " : "") "%.0f", $i; print "" }' <<<"${I[eps]}")"
    printf '| p50 / p99 / max ms (the slowest node'"'"'s) | %s / %s / %s | |\n' "$(m2 "${I[p50]}")" "$(m2 "${I[p99]}")" "$(m2 "${I[max]}")"
    printf '| requests answered (3 nodes) | %.0f | %s |\n' "$(med "${I[requests]}")" "$(tr ' ' '\n' <<<"${I[requests]}" | grep . | paste -sd/ - | sed 's#/# / #g')"
    printf '| errors (non-200, broken, unanswered; summed) | %d | |\n' "$(tr ' ' '\n' <<<"${I[errors]}" | awk '{ s += $1 } END { print s + 0 }')"
    printf '| acknowledged events, each in the stream exactly once | %s of %s (all runs) | |\n' \
      "$(tr ' ' '\n' <<<"${I[load_journaled]}" | awk '{ s += $1 } END { print s + 0 }')" "$(tr ' ' '\n' <<<"${I[acked]}" | awk '{ s += $1 } END { print s + 0 }')"
    printf '| Ferry'"'"'s CPU (3 nodes), %% of one core | %s | |\n' "$(cpu_pct ferry_cpu)"
    printf '| NATS servers'"'"' CPU, %% of one core | %s | |\n' "$(cpu_pct nats_cpu)"
    printf '| load tools'"'"' CPU, %% of one core | %s | |\n' "$(cpu_pct load_cpu)"
    # shellcheck disable=SC2016 # backquotes for Markdown
    printf '| messages the NATS servers took in (clients and routes, `/varz`) per acknowledged event | %.1f | |\n' \
      "$(med "$(paste -d' ' <(tr ' ' '\n' <<<"${I[nats_msgs]}" | grep .) <(tr ' ' '\n' <<<"${I[events]}" | grep .) |
        awk '{ printf "%s ", ($2 > 0 ? $1 / $2 : 0) }')")"
    echo
    target "≥ $T_EPS events/s through JetStream with 3 replicas ($(fmt '%.0f' "$eps") events/s)" "$(verdict_ge "$eps" "$T_EPS")"
  )
fi

failover_md=""
if [[ -n "${PART[failover]:-}" ]]; then
  fo=$(med "${FO[seconds]}")
  failover_md=$(
    echo "### failover after \`kill -9\` of a node: 3 nodes, ack_wait ${ACK_WAIT_S} s"
    echo
    echo "A fresh NATS cluster and 3 nodes in every run. $FO_EVENTS images (one small image per repository) are notified to the nodes in turn for a destination that is a tarpit (\`stall_timeout: 1h\`, \`max_concurrency: 64\`): every job hangs in flight, its entry held by the node that took it from the shared consumer and kept alive every third of the ack wait. A second after all $FO_EVENTS are in flight, the node holding the most is killed with -9. Failover = from the kill until the survivors' backlog at that destination (each survivor's own \`/v1/status\`, polled every 50 ms) holds all $FO_EVENTS entries again: the servers gave the dead node's entries to the others once its ack wait ran out, and they took them and started their jobs."
    echo
    echo "| metric | median of $RUNS run(s) | each run |"
    echo "| --- | ---: | --- |"
    printf '| failover s: kill → every entry of the dead node taken | %.2f | %s |\n' "$fo" "$(runs2 "${FO[seconds]}")"
    printf '| kill → the first of them taken, s | %s | %s |\n' "$(m2 "${FO[first]}")" "$(runs2 "${FO[first]}")"
    printf '| entries the killed node held | %s | %s |\n' "$(med "${FO[held]}")" "$(tr ' ' '\n' <<<"${FO[held]}" | grep . | paste -sd/ - | sed 's#/# / #g')"
    printf '| jobs in flight per node before the kill | | %s |\n' "$(tr ' ' '\n' <<<"${FO[per_node]}" | grep . | paste -sd';' - | sed 's#;#; #g')"
    printf '| job records still naming the killed node afterwards | %s | |\n' "$(tr ' ' '\n' <<<"${FO[records_victim]}" | awk '{ s += $1 } END { print s + 0 }')"
    echo
    target "failover ≤ 2 × ack_wait = ${T_FAILOVER} s ($(fmt '%.2f' "$fo") s)" "$(verdict_le "$fo" "$T_FAILOVER")"
  )
fi

capacity_md=""
if [[ -n "${PART[fleet]:-}" && -n "${PART[ingest]:-}" ]]; then
  # The capacity model's inputs, per job (one image to one destination) of the fleet part.
  JOBS=$((REPOS * TAGS * 3))
  nats_ms=$(calc "1000 * $(med "${F[js3,nats_cpu]}") / $JOBS")
  node_ms=$(calc "1000 * $(med "${F[js3,ferry_cpu]}") / $JOBS")
  rdb_ms=$(calc "1000 * $(med "${F[rdb1,ferry_cpu]}") / $JOBS")
  amp=$(med "${F[js3,src_read]}")
  capacity_md=$(
    echo "### capacity model (computed from the tables above)"
    echo
    echo "Per job (one image to one destination; $JOBS jobs in the fleet part, images of $(fmt '%.0f' "$(calc "$LOGICAL / ($REPOS * $TAGS) / 1024")") KiB on average): the NATS servers spent **$(fmt '%.1f' "$nats_ms") ms** of CPU, the three replicas together (3 nodes); the Ferry nodes **$(fmt '%.1f' "$node_ms") ms** (one node on RocksDB: $(fmt '%.1f' "$rdb_ms") ms). With 3 nodes the source served **$(fmt '%.2f' "$amp")×** the fleet's unique bytes (a node reads a layer of 1 MiB or more into its own spool unless another node claimed it: the blob hints). Webhook ingest took **$(fmt '%.0f' "$(med "${I[eps]}")") events/s**."
    echo
    echo "For P pushes per second, D destinations, S GiB per push and N Ferry nodes:"
    echo
    echo "| resource | needed | with this run's figures |"
    echo "| --- | --- | --- |"
    printf '| NATS servers'"'"' CPU (cores, all servers) | P × D × %.1f ms | P = 10, D = 3: %.2f cores |
' "$nats_ms" "$(calc "10 * 3 * $nats_ms / 1000")"
    printf '| Ferry nodes'"'"' CPU (cores, all nodes; the control path, small images) | P × D × %.1f ms | P = 10, D = 3: %.2f cores |
' "$node_ms" "$(calc "10 * 3 * $node_ms / 1000")"
    printf '| each node'"'"'s network (GiB/s) | P × S × (%.2f + D) ÷ N | P = 10, S = 0.5, D = 3, N = 3: %.1f GiB/s |
' "$amp" "$(calc "10 * 0.5 * ($amp + 3) / 3")"
    printf '| the source'"'"'s egress (GiB/s) | P × S × %.2f | P = 10, S = 0.5: %.1f GiB/s |
' "$amp" "$(calc "10 * 0.5 * $amp")"
    printf '| webhook ingest | P ≤ %.0f events/s | |
' "$(med "${I[eps]}")"
    echo
    echo "Nodes: enough that each node's share of the bytes, P × S × (a + D) ÷ N, fits its network (a node moves what it copies through memory and its spool: its CPU per byte is the copy path's, see the fleet and copy benches). NATS: three servers (a quorum of two) for \`replicas: 3\`, with the cores above; more servers spread the streams' leaders but each write still goes to three. The next limit is the control path's per-job cost on the NATS servers, P × D × $(fmt '%.1f' "$nats_ms") ms: each job's status record (one write; four with the index of open jobs when the job ran for more than 3 s), its tag's hold and release (two compare-and-set writes on a replicated stream, which carry the tag's fence), its entry's acknowledgement, and per blob of 1 MiB or more a node uploads, its claim and where it landed (writes on the one-replica bucket of blob hints)."
  )
fi

elapsed=$(calc "$EPOCHREALTIME - $bench_start" | xargs printf '%.0f')
header=$(
  echo "## Ferry as a cluster: one node on RocksDB against nodes on NATS JetStream"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, ferry $(bench_commit) (binary sha256 $FERRY_SHA…), $(nats-server --version), Distribution $(docker-registry --version 2>/dev/null | awk '{print $NF}'), bench took ${elapsed} s; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (the machine may be shared)."
  echo
  echo "- NATS: 3 nats-server processes on loopback, one cluster, the JetStream store in the bench's temp dir under \`build/bench/\`; \`replicas: 3\` (the stream and every bucket), \`ack_wait: ${ACK_WAIT_S}s\`, the other \`cluster:\` keys at their defaults. On $(nproc) cores the three servers compete with Ferry, the registries and the load tools for the CPU: each table gives their CPU next to Ferry's."
  echo "- $RUNS run(s) of every part, the parts in turn within a run; figures are **medians**, ratios of medians, and each run's values are listed beside them. The verdicts are computed and asserted by \`tests/bench/cluster.sh\` (PASS/MISS); a MISS does not change its exit status, as in the other benches, while a run that fails, does not verify or loses an acknowledged event fails the bench (exit 1, no block)."
)
report=$(
  for md in "$fleet_md" "$ingest_md" "$failover_md" "$capacity_md"; do
    [[ -z "$md" ]] || printf '%s\n\n' "$md"
  done
)
misses=$(grep -c '\*\*MISS\*\*' <<<"$report" || true)
details=$(
  echo "### details (not in the README's block)"
  echo
  if [[ -s "$ODD" ]]; then
    echo "What the nodes logged besides their start ($(wc -l <"$ODD") lines, first 40; the failover and ingest parts kill their nodes, whose jobs hang on the tarpit):"
    echo
    echo '```'
    head -n 40 "$ODD"
    echo '```'
  else
    echo "The nodes logged nothing besides their start."
  fi
)

mkdir -p "$(dirname "$OUT")"
printf '%s\n\n%s\n\n%s\n' "$header" "$report" "$details" >"$OUT"
echo
printf '%s\n\n%s\n\n%s\n' "$header" "$report" "$details"
say "report written to $OUT ($misses target(s) missed)"
# The README's block: the report without its title and details, one heading level down.
printf '%s\n\n%s\n' "$header" "$report" | sed -e '1,2d' -e 's/^### /#### /' >"$TEST_TMP/readme-block.md"
bench_readme_write cluster "$TEST_TMP/readme-block.md"
