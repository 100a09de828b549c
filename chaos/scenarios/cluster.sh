#!/usr/bin/env bash
# cluster: three `ferry serve` nodes share one journal on a 3-server NATS
# JetStream cluster (replicas 3). The source registry notifies every node
# (each event reaches all three: the stream keeps it once). While images are
# pushed, Ferry nodes and NATS servers are killed with SIGKILL at random
# moments (one of each kind down at a time) and restarted. After the last
# restart every destination converges (`ferry verify` clean); every pushed
# image's event is in the journal (but those older than the last 64 entries
# of their tag, which the stream lets go), and every event id once; a watcher never
# saw a destination tag move backwards in push order; no job FAILED; and
# every node's /v1/status shows the three nodes.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$FERRY_SOURCE_DIR/tests/integration/nats_lib.sh"
require_ferry

chaos_seed
ferry_kills=16 nats_kills=6 converge_s=240
if chaos_short; then
  ferry_kills=4 nats_kills=2 converge_s=90
fi
figure "cluster seed=$seed ferry_kills=$ferry_kills nats_kills=$nats_kills (CHAOS_SEED=$seed repeats the kill timing)"
chaos_faults "$ferry_kills \`kill -9\` of a Ferry node and $nats_kills of a NATS server (3 of each) while images were pushed"

nats_cluster_start 3
N=3
notify=()
for ((k = 1; k <= N; k++)); do
  declare -g "FERRY_PORT$k=$(free_port)"
  port_var=FERRY_PORT$k
  notify+=(--notify "http://127.0.0.1:${!port_var}/v1/events/src")
done
FERRY_PORT=$FERRY_PORT1 # chaos_api asks node 1
registry_start src "${notify[@]}"
registry_start d1
registry_start d2
servers=$(tr ',' '\n' <<<"$NATS_URLS" | sed 's/.*/"&"/' | paste -sd, -)
for ((k = 1; k <= N; k++)); do
  port_var=FERRY_PORT$k
  cat >"$TEST_TMP/ferry$k.yaml" <<YAML
data_dir: $TEST_TMP/data$k
listen: 127.0.0.1:${!port_var}
poll_interval: 0
cluster:
  servers: [$servers]
  name: node$k
  replicas: 3
  ack_wait: 3s
  timeout: 2s
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2, repository: "dr/{repo}" }] }
YAML
done
# `ferry verify` needs no journal: one node's config without the cluster.
sed -e "s#^data_dir: .*#data_dir: $TEST_TMP/verify-data#" -e '/^cluster:/,/^  timeout:/d' \
  "$TEST_TMP/ferry1.yaml" >"$TEST_TMP/verify.yaml"
for ((k = 1; k <= N; k++)); do
  port_var=FERRY_PORT$k
  ferry_serve_start "ferry$k" "$TEST_TMP/ferry$k.yaml" "${!port_var}"
done

# Pushes: push n moves cluster/r(n%2):t to a new image; pushes.txt records
# "REPO DIGEST" in push order.
cat >"$TEST_TMP/pusher.sh" <<'SH'
n=0
while [ ! -e "$2.stop" ] && [ $n -lt 1000 ]; do
  repo="cluster/r$((n % 2))"
  size=$(( (n * 7919 % 16 + 1) * 32 ))K
  d=$(python3 "$FIXTUREGEN" push --registry "$1" --repo "$repo" --tag t --seed "cluster-$3-$n" \
    --layers 1 --layer-size "$size" --compact | jq -r .digest) && echo "$repo $d" >>"$2.txt"
  n=$((n + 1))
  sleep 0.2
done
SH
watch_args=()
for r in r0 r1; do
  watch_args+=("d1:$r=$d1_URL/v2/cluster/$r/manifests/t" "d2:$r=$d2_URL/v2/dr/cluster/$r/manifests/t")
done
start_bg watcher python3 "$FERRY_SOURCE_DIR/chaos/watch_tags.py" "$TEST_TMP/seen.txt" "$TEST_TMP/watch.stop" 0.05 "${watch_args[@]}"
start_bg pusher bash "$TEST_TMP/pusher.sh" "$src_ADDR" "$TEST_TMP/pushes" "$seed"

# The faults, shuffled: "f" kills a Ferry node, "n" a NATS server.
faults=()
for ((i = 0; i < ferry_kills; i++)); do faults+=(f); done
for ((i = 0; i < nats_kills; i++)); do faults+=(n); done
for ((i = ${#faults[@]} - 1; i > 0; i--)); do
  j=$((RANDOM % (i + 1)))
  t=${faults[$i]} faults[i]=${faults[$j]} faults[j]=$t
done
start=$SECONDS
for f in "${faults[@]}"; do
  sleep "$((RANDOM % 3)).$((RANDOM % 10))"
  k=$((RANDOM % N + 1))
  if [[ "$f" == f ]]; then
    pid_var=ferry${k}_PID port_var=FERRY_PORT$k
    kill -KILL "${!pid_var}"
    wait "${!pid_var}" 2>/dev/null || true
    sleep "0.$((RANDOM % 10))"
    ferry_serve_start "ferry$k" "$TEST_TMP/ferry$k.yaml" "${!port_var}"
  else
    nats_server_kill "$k"
    sleep "$((RANDOM % 3 + 1))"
    nats_server_restart "$k"
  fi
done
kill_seconds=$((SECONDS - start))
sleep 2
touch "$TEST_TMP/pushes.stop"
wait "$pusher_PID" 2>/dev/null || true
pushed=$(wc -l <"$TEST_TMP/pushes.txt")

converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" "$converge_s" && converged=1
last_r0=$(awk '$1 == "cluster/r0" { d = $2 } END { print d }' "$TEST_TMP/pushes.txt")
last_r1=$(awk '$1 == "cluster/r1" { d = $2 } END { print d }' "$TEST_TMP/pushes.txt")
seen_final() {
  local name want
  for name in d1:r0 d2:r0 d1:r1 d2:r1; do
    want=$last_r0
    [[ "$name" == *:r1 ]] && want=$last_r1
    [[ "$(awk -v name="$name" '$1 == name { d = $2 } END { print d }' "$TEST_TMP/seen.txt")" == "$want" ]] || return 1
  done
}
wait_until 10 seen_final || note "the watcher did not see every final tag"
touch "$TEST_TMP/watch.stop"
wait "$watcher_PID" 2>/dev/null || true

backwards=$(chaos_backwards "$TEST_TMP/pushes.txt" "$TEST_TMP/seen.txt")
moves=$(wc -l <"$TEST_TMP/seen.txt")

# The journal, read through node 2's config: every pushed image's webhook
# event is there (none acknowledged and lost), and no event id twice.
"$(ferry_bin)" journal -c "$TEST_TMP/ferry2.yaml" ls --json >"$TEST_TMP/journal.json"
entries=$(wc -l <"$TEST_TMP/journal.json")
# The stream keeps the last 64 entries of each tag (README): a push older
# than the oldest one the journal still holds for its tag was journaled and
# let go; every push from there on must be there.
jq -r 'select(.event_id | startswith("poll:") or startswith("source:") | not) | .digest' \
  "$TEST_TMP/journal.json" | sort -u >"$TEST_TMP/journaled.txt"
missing=$(awk 'NR == FNR { have[$1] = 1; next }
  { n[$1]++; repo[$1, n[$1]] = $2 }
  END {
    for (r in n) {
      first = 0
      for (i = 1; i <= n[r] && !first; i++) if (repo[r, i] in have) first = i
      for (i = first; first && i <= n[r]; i++) if (!(repo[r, i] in have)) print r " " repo[r, i]
    }
  }' "$TEST_TMP/journaled.txt" "$TEST_TMP/pushes.txt")
evicted=$(awk 'NR == FNR { have[$1] = 1; next } !($2 in have) { k++ } END { print k + 0 }' \
  "$TEST_TMP/journaled.txt" "$TEST_TMP/pushes.txt")
repeated=$(jq -r '.source + " " + .event_id' "$TEST_TMP/journal.json" | sort | uniq -d)
failed_records=$(chaos_failed_jobs "$TEST_TMP/ferry1.yaml")
nodes_seen=""
all_seen() { # every node sees the three alive (a node restarted last beats within 2 s)
  local k port_var
  nodes_seen=""
  for ((k = 1; k <= N; k++)); do
    port_var=FERRY_PORT$k
    nodes_seen+="$(curl -sf --max-time 5 "http://127.0.0.1:${!port_var}/v1/status" | jq -c '[.cluster.nodes[] | select(.alive) | .name] | sort') "
  done
  [[ "$nodes_seen" == '["node1","node2","node3"] ["node1","node2","node3"] ["node1","node2","node3"] ' ]]
}
wait_until 20 all_seen || true

figure "cluster kills=$((ferry_kills + nats_kills)) over ${kill_seconds}s images_pushed=$pushed journal_entries=$entries tag_moves_seen=$moves"
figure "cluster converged=$converged backwards=$(grep -c . <<<"$backwards" || true) events_missing=$(grep -c . <<<"$missing" || true) events_let_go_by_the_per_tag_cap=$((evicted - $(grep -c . <<<"$missing" || true))) event_ids_repeated=$(grep -c . <<<"$repeated" || true) failed_job_records=$failed_records"
((pushed >= 4)) || fail "only $pushed images pushed: the scenario proved little"
[[ -z "$backwards" ]] || fail "a tag moved backwards: $(head -n 5 <<<"$backwards")"
((converged)) || fail "no convergence after the last restart: $(head -n 5 "$TEST_TMP/verify.out")"
seen_final || fail "converged, but the watcher did not see the final tags"
[[ -z "$missing" ]] || fail "pushed images with no webhook entry in the journal, newer than the oldest one it holds for their tag: $(head -n 3 <<<"$missing")"
[[ -z "$repeated" ]] || fail "event ids in the journal twice: $(head -n 3 <<<"$repeated")"
assert_eq "$failed_records" 0 "no FAILED job in the cluster's job records"
assert_eq "$nodes_seen" '["node1","node2","node3"] ["node1","node2","node3"] ["node1","node2","node3"] ' \
  "every node's /v1/status shows the three nodes alive"
chaos_row "$ferry_kills \`kill -9\` of a Ferry node and $nats_kills of a NATS server (3 nodes, 3 servers, replicas 3) in $kill_seconds s while $pushed images were pushed, every event sent to all 3 nodes" \
  "**pass**: converged (\`ferry verify\` clean), $moves tag moves watched at 2 destinations, none backwards, every pushed image's event in the journal but those the per-tag cap of 64 let go, each event id once ($entries entries), no FAILED job"
pass "cluster: $ferry_kills Ferry and $nats_kills NATS kill -9s, $pushed images, converged, nothing lost or repeated, no tag moved backwards ($moves moves seen)"
