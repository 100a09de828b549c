#!/usr/bin/env bash
# Two `ferry serve` nodes of one cluster on a 3-server NATS JetStream:
# - `ferry sync` refuses a config with a cluster: section;
# - an event posted to either node is journaled once and replicated by one
#   of them; `ferry journal ls` reads the cluster's journal;
# - /v1/status on each node shows both nodes alive, and /metrics carries a
#   node label;
# - `ferry status --wait` works against either node, `ferry status` lists the nodes;
# - a layer that images on both nodes share is read from the source once:
#   one node claims it, the other mounts it from where it landed (blob hints);
#   their small blobs take no hint, nor does a node alone;
# - a backlog posted to one node is shared: each node takes from the shared
#   work only what it can start soon;
# - no node moves a destination tag while another holds the tag (its
#   lease), nor deletes it;
# - one node polls the source (its lease), and after a `kill -9` of that
#   node the other one takes the lease;
# - a job parked behind a destination that is down (its entry settled, its
#   record naming its node) is taken up by the other node once its node is
#   killed, and arrives when the destination comes up;
# - a waiting job survives a reload though another tag's job of the same
#   image wrote COMPLETE into their shared record (its claim runs it);
# - a node stopped with SIGTERM leaves the node list at once and gives its
#   poller's lease back;
# - with two NATS servers of three down, a webhook is answered 503 (nothing
#   acknowledged is lost); with one back, the event is taken and replicated.
# labels: heavy
set -euo pipefail
source "$(dirname "$0")/nats_lib.sh"
require_ferry
FERRY=$(ferry_bin)

nats_cluster_start 3
registry_start src --delete
registry_start d1 --delete
late_port=$(free_port)
later_port=$(free_port)
port1=$(free_port)
port2=$(free_port)
servers=$(tr ',' '\n' <<<"$NATS_URLS" | sed 's/.*/"&"/' | paste -sd, -)
for k in 1 2; do
  port_var=port$k
  cat >"$TEST_TMP/ferry$k.yaml" <<YAML
data_dir: $TEST_TMP/data$k
listen: 127.0.0.1:${!port_var}
poll_interval: 2s
retry: { attempts: 10, base: 60s, max: 60s }
cluster:
  servers: [$servers]
  name: node$k
  replicas: 3
  ack_wait: 3s
  timeout: 2s
registries:
  src: { url: "http://$src_ADDR", poll: true, repositories: ["app", "late", "gone"] }
  d1: { url: "http://$d1_ADDR" }
  late: { url: "http://127.0.0.1:$late_port" }
  later: { url: "http://127.0.0.1:$later_port" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: d1 }] }
  - { name: gone, source: src, repositories: ["gone"], deletes: true, destinations: [{ registry: d1 }] }
  - { name: late, source: src, repositories: ["late"], destinations: [{ registry: late }] }
  - { name: later, source: src, repositories: ["later"], destinations: [{ registry: later }] }
  - { name: share, source: src, repositories: ["share*"], destinations: [{ registry: d1 }] }
YAML
done
api() { echo "http://127.0.0.1:$(eval echo "\$port$1")"; }
st() { curl -sf --max-time 5 "$(api "$1")/v1/status"; }
notify() { # NODE IMAGE_JSON REPO TAG : post the push to NODE's webhook; prints its answer
  local body
  body=$(jq -c --arg r "$3" --arg t "$4" '{events: [{id: ("ev-" + $r + $t), action: "push",
    target: {repository: $r, digest: .digest, mediaType: .media_type, size: 500, tag: $t}}]}' "$2")
  curl -sf --max-time 10 -X POST -H 'Content-Type: application/vnd.docker.distribution.events.v1+json' \
    --data-binary "$body" "$(api "$1")/v1/events/src"
}
at() { [[ "$(skopeo_raw "$1/$2" 2>/dev/null | digest_of)" == "$(jq -r .digest "$3")" ]]; }
jobs() { timeout 20 "$FERRY" journal -c "$TEST_TMP/ferry$1.yaml" jobs --json; }

# A one-shot sync would take the cluster's work from its nodes: refused.
rc=0
"$FERRY" sync -c "$TEST_TMP/ferry1.yaml" >"$TEST_TMP/sync.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "ferry sync on a cluster's config exits nonzero"
grep -q "cluster" "$TEST_TMP/sync.out" || fail "ferry sync did not say why: $(cat "$TEST_TMP/sync.out")"
pass "ferry sync refuses a cluster's config: $(head -c 120 "$TEST_TMP/sync.out")"

ferry_serve_start ferry1 "$TEST_TMP/ferry1.yaml" "$port1"
ferry_serve_start ferry2 "$TEST_TMP/ferry2.yaml" "$port2"

# Both nodes see both alive; the metrics say which node.
both_alive() {
  local k
  for k in 1 2; do
    [[ "$(st "$k" | jq -c '[.cluster.nodes[] | select(.alive) | .name] | sort')" == '["node1","node2"]' ]] || return 1
  done
}
wait_until 15 both_alive || fail "the nodes do not see each other: $(st 1 | jq -c .cluster)"
assert_eq "$(st 2 | jq -r '.cluster.node + " " + .cluster.journal')" "node2 jetstream" "node 2's status names it and its journal"
curl -sf --max-time 5 "$(api 1)/metrics" | grep -q '^ferry_journal_last_seq{node="node1"} ' ||
  fail "node 1's /metrics has no node label: $(curl -sf --max-time 5 "$(api 1)/metrics" | grep last_seq)"
pass "each node's status shows both nodes alive, and /metrics says node=\"node1\""

# An event posted to both nodes: journaled once, replicated.
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed cl-app1 --layers 1 --layer-size 16K --compact >"$TEST_TMP/app1.json"
notify 1 "$TEST_TMP/app1.json" app v1 >/dev/null
notify 2 "$TEST_TMP/app1.json" app v1 >/dev/null
wait_until 30 at "$d1_ADDR" app:v1 "$TEST_TMP/app1.json" || fail "app:v1 did not reach d1: $(jobs 1 | head -n 3)"
n=$(timeout 20 "$FERRY" journal -c "$TEST_TMP/ferry2.yaml" ls --json | jq -s '[.[] | select(.event_id == "ev-appv1")] | length')
assert_eq "$n" 1 "the event posted to both nodes is in the cluster's journal once"
pass "an event posted to both nodes was journaled once and replicated"
# The deploy gate works against either node.
for k in 1 2; do
  timeout 60 "$FERRY" status -c "$TEST_TMP/ferry$k.yaml" --wait --image app:v1 --timeout 30 >"$TEST_TMP/wait$k.out" 2>&1 ||
    fail "ferry status --wait against node $k: $(cat "$TEST_TMP/wait$k.out")"
done
"$FERRY" status -c "$TEST_TMP/ferry2.yaml" >"$TEST_TMP/status.out" 2>&1 || true
grep -q "^node1 " "$TEST_TMP/status.out" && grep -q "^node2 (this) " "$TEST_TMP/status.out" ||
  fail "ferry status on node 2 does not list both nodes: $(cat "$TEST_TMP/status.out")"
pass "ferry status --wait answers COMPLETE on either node, and ferry status lists the nodes"

# Six images share a base layer; both nodes get three each at once. One
# node claims the layer and reads it from the source; the other waits for
# it, or finds where it landed, and mounts it: the source serves it once.
for i in 0 1 2 3 4 5; do
  fixturegen push --registry "$src_ADDR" --repo "share$i" --tag v1 --seed "cl-share$i" --layers 1 --layer-size 16K \
    --base-seed cl-base --base-layers 1 --base-layer-size 2M --compact >"$TEST_TMP/share$i.json"
done
base=$(jq -r '.blobs | max_by(.size) | .digest' "$TEST_TMP/share0.json")
posts=()
for i in 0 1 2 3 4 5; do
  notify $((i % 2 + 1)) "$TEST_TMP/share$i.json" "share$i" v1 >/dev/null &
  posts+=($!)
done
for p in "${posts[@]}"; do wait "$p" || fail "a notification of the shared images was refused"; done
shared_all() {
  local i
  for i in 0 1 2 3 4 5; do at "$d1_ADDR" "share$i:v1" "$TEST_TMP/share$i.json" || return 1; done
}
wait_until 60 shared_all || fail "the shared images did not all reach d1: $(jobs 1 | tail -n 3)"
reads=$(grep -c "\"GET /v2/share[0-9]/blobs/$base " "$TEST_TMP/src.log" || true)
ran=$(for k in 1 2; do jobs "$k"; done | jq -s '[.[] | select(.repository | startswith("share")) | .node] | unique | length')
hinted() { # the nodes' hint mounts and waits, as their last beats said
  st 1 | jq '[.cluster.nodes[].figures | .hint_mounts + .hint_waits] | add'
}
some_hinted() { (($(hinted) > 0)); }
[[ "$ran" == 2 ]] || fail "the shared images' jobs did not run on both nodes (nodes: $ran)"
assert_eq "$reads" 1 "the shared base layer's GETs at the source (both nodes replicated images that hold it)"
wait_until 10 some_hinted || fail "no node mounted or waited on a blob hint: $(st 1 | jq -c '[.cluster.nodes[].figures]')"
hinted=$(hinted)
pass "a layer shared by images on both nodes was read from the source once (hint mounts and waits: $hinted)"
# Only the base layer (2 MiB) was worth a hint: the images' own 16K layers
# and configs, and app:v1's, went up without one. The bucket keeps one key,
# where the base landed at d1, once its claim is given back (1.5 s after
# its upload).
hint_keys() { # the blob hints' keys: the bucket has one replica, on one of the servers
  local k s=0 n mon
  for k in 1 2 3; do
    mon="NATS_MONITOR$k"
    n=$(curl -fsS --max-time 5 "${!mon}/jsz?accounts=true&streams=true" |
      jq '[.account_details[]?.stream_detail[]? | select(.name == "KV_ferry_blobs") | .state.messages] | add // 0')
    s=$((s + n))
  done
  echo "$s"
}
one_hint_key() { [[ "$(hint_keys)" == 1 ]]; }
wait_until 10 one_hint_key || fail "the blob hints hold $(hint_keys) keys, not one (the shared base layer at d1)"
pass "only the shared layer took a blob hint: the images' small blobs went up without one"

# A backlog is shared, not hoarded: 24 tags posted to node 1 at once. Each
# node takes from the shared work only what it can start soon: d1 runs 4
# jobs at once, and a node holds 2 rounds of that (late and later, which
# had no job, ask for none). So both nodes run some, neither ever held more
# than 8 entries, and each says so in its figures.
fixturegen push --registry "$src_ADDR" --repo sharebk --tag t0 --seed cl-bk --layers 1 --layer-size 16K --compact >"$TEST_TMP/bk.json"
bk_type=$(jq -r .media_type "$TEST_TMP/bk.json")
curl -sf --max-time 10 -H "Accept: $bk_type" "$src_URL/v2/sharebk/manifests/t0" -o "$TEST_TMP/bk.manifest" ||
  fail "cannot read sharebk:t0's manifest"
for i in $(seq 1 23); do
  curl -sf --max-time 10 -X PUT -H "Content-Type: $bk_type" --data-binary @"$TEST_TMP/bk.manifest" \
    "$src_URL/v2/sharebk/manifests/t$i" >/dev/null || fail "cannot tag sharebk:t$i at the source"
done
jq -c '{events: [range(0; 24) as $i | {id: ("ev-bk-" + ($i | tostring)), action: "push",
  target: {repository: "sharebk", digest: .digest, mediaType: .media_type, size: 500, tag: ("t" + ($i | tostring))}}]}' \
  "$TEST_TMP/bk.json" >"$TEST_TMP/bk-events.json"
bk_start=$(st 1 | jq -c '[.cluster.nodes[] | select(.alive) | {(.name): .figures.complete}] | add')
bk_before=$(jq '[.[]] | add' <<<"$bk_start")
assert_eq "$(events_post "$(api 1)" "$TEST_TMP/bk-events.json")" 200 "24 tags of sharebk posted to node 1"
bk_tags() { curl -sf --max-time 5 "$d1_URL/v2/sharebk/tags/list" | jq '.tags | length'; }
bk_all() { [[ "$(bk_tags 2>/dev/null)" == 24 ]]; }
wait_until 60 bk_all || fail "sharebk's 24 tags did not all reach d1 ($(bk_tags) did): $(jobs 1 | tail -n 3)"
held_settled() { # each node's last beat: it holds nothing now, and has finished the 24
  local f
  f=$(st 1 | jq -c '[.cluster.nodes[] | select(.alive) | .figures]')
  [[ "$(jq -c '[.[].held]' <<<"$f")" == "[0,0]" ]] &&
    (($(jq '[.[].complete] | add' <<<"$f") >= bk_before + 24))
}
wait_until 10 held_settled || fail "the nodes still hold entries: $(st 1 | jq -c '[.cluster.nodes[].figures]')"
bk_done=$(st 1 | jq -c '[.cluster.nodes[] | select(.alive) | {(.name): .figures.complete}] | add')
for k in 1 2; do
  n=$(($(jq ".node$k" <<<"$bk_done") - $(jq ".node$k" <<<"$bk_start")))
  ((n > 0)) || fail "node $k ran none of sharebk's 24 jobs (completed before and after: $bk_start $bk_done)"
done
most=$(st 1 | jq '[.cluster.nodes[].figures.held_most] | max')
total_most=$(st 1 | jq '.cluster.totals.held_most')
((most >= 1 && most <= 8)) || fail "a node held $most entries at once (d1 runs 4 jobs at once: at most 8)"
assert_eq "$total_most" "$most" "the totals' held_most: the largest node's"
pass "a backlog of 24 was shared by both nodes, neither holding more than 8 entries at once (most: $most)"

# A destination tag's lease held by another node (played by cluster_lease):
# no node moves that tag until it lapses; then the tag arrives.
lease_tool="$FERRY_BUILD_DIR/cluster_lease"
"$lease_tool" "$TEST_TMP/ferry1.yaml" 'tag:d1\napp\nv9' intruder 12000 >/dev/null ||
  fail "the test could not take the tag's lease"
fixturegen push --registry "$src_ADDR" --repo app --tag v9 --seed cl-app9 --layers 1 --layer-size 16K --compact >"$TEST_TMP/app9.json"
t0=$(date +%s)
notify 1 "$TEST_TMP/app9.json" app v9 >/dev/null
waited() { grep -q "node intruder is moving this tag now" "$TEST_TMP/ferry1.log" "$TEST_TMP/ferry2.log"; }
wait_until 20 waited || fail "no node waited for the tag's lease: $(jobs 1 | jq -c 'select(.repository == "app")')"
assert_eq "$(manifest_ref_digest "$d1_URL" app v9)" 404 "app:v9 is not at d1 while another node holds its tag's lease"
wait_until 40 at "$d1_ADDR" app:v9 "$TEST_TMP/app9.json" || fail "app:v9 did not arrive once the tag's lease lapsed"
took=$(($(date +%s) - t0))
((took >= 10)) || fail "app:v9 arrived ${took}s after its push, while the tag's lease was held for 12 s"
pass "a destination tag whose lease another node held was left alone until the lease lapsed (arrived after ${took}s)"

# A tag's delete waits for another node's hold of the tag as a push does:
# its PUT could otherwise land after the delete and bring the tag back.
fixturegen push --registry "$src_ADDR" --repo gone --tag v1 --seed cl-gone1 --layers 1 --layer-size 16K --compact >"$TEST_TMP/gone1.json"
notify 2 "$TEST_TMP/gone1.json" gone v1 >/dev/null
wait_until 30 at "$d1_ADDR" gone:v1 "$TEST_TMP/gone1.json" || fail "gone:v1 did not arrive at d1"
"$lease_tool" "$TEST_TMP/ferry1.yaml" 'tag:d1\ngone\nv1' intruder 10000 >/dev/null ||
  fail "the test could not take gone:v1's hold"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/gone/manifests/$(jq -r .digest "$TEST_TMP/gone1.json")")
assert_eq "$code" 202 "deleted gone:v1's manifest at the source"
waits_before=$(grep -c "node intruder is moving this tag now" "$TEST_TMP/ferry1.log" "$TEST_TMP/ferry2.log" | awk -F: '{s += $2} END {print s}')
t0=$(date +%s)
event_envelope "$TEST_TMP/gone-del.json" ev-gone-del delete gone "" v1 ""
assert_eq "$(events_post "$(api 1)" "$TEST_TMP/gone-del.json")" 200 "the delete of gone:v1 posted to node 1"
delete_waited() { [[ $(grep -c "node intruder is moving this tag now" "$TEST_TMP/ferry1.log" "$TEST_TMP/ferry2.log" | awk -F: '{s += $2} END {print s}') -gt $waits_before ]]; }
wait_until 20 delete_waited || fail "no node waited for gone:v1's hold: $(jobs 1 | jq -c 'select(.repository == "gone")')"
at "$d1_ADDR" gone:v1 "$TEST_TMP/gone1.json" || fail "gone:v1 was deleted at d1 while another node held the tag"
gone_at_d1() { [[ "$(manifest_ref_digest "$d1_URL" gone v1)" == 404 ]]; }
wait_until 40 gone_at_d1 || fail "gone:v1 was not deleted at d1 once the hold lapsed"
took=$(($(date +%s) - t0))
((took >= 8)) || fail "gone:v1 was deleted ${took}s after the delete, while the tag was held for 10 s"
pass "a tag's delete waited for another node's hold of the tag, and ran once it lapsed (${took}s)"

# One node polls the source; kill it, and the other takes its lease.
polling() { st "$1" | jq '[.cluster.nodes[] | select(.self) | .figures.polling] | add // 0'; }
one_poller() { (($(polling 1) + $(polling 2) == 1)); }
wait_until 15 one_poller || fail "not exactly one node polls src: node1 $(polling 1), node2 $(polling 2)"
poller=1 other=2
(($(polling 2) == 1)) && poller=2 other=1
pid_var=ferry${poller}_PID
kill -KILL "${!pid_var}"
wait "${!pid_var}" 2>/dev/null || true
t0=$(date +%s)
took() { (($(polling "$other") == 1)); }
wait_until 30 took || fail "node$other did not take the poller's lease after node$poller died"
took_s=$(($(date +%s) - t0))
fixturegen push --registry "$src_ADDR" --repo app --tag v2 --seed cl-app2 --layers 1 --layer-size 16K --compact >"$TEST_TMP/app2.json"
wait_until 30 at "$d1_ADDR" app:v2 "$TEST_TMP/app2.json" || fail "app:v2 (no webhook) was not polled and replicated by node$other"
pass "node$other took the poller's lease ${took_s}s after node$poller's kill -9, and polled app:v2 over"
port_var=port$poller
ferry_serve_start "ferry$poller" "$TEST_TMP/ferry$poller.yaml" "${!port_var}"
wait_until 15 both_alive || fail "node$poller did not come back: $(st "$other" | jq -c .cluster)"

# A job parked behind `late` (nothing listens yet): its record names its node.
fixturegen push --registry "$src_ADDR" --repo late --tag v1 --seed cl-late --layers 1 --layer-size 16K --compact >"$TEST_TMP/late.json"
notify 1 "$TEST_TMP/late.json" late v1 >/dev/null
owner=""
parked() {
  owner=$(jobs 1 | jq -r 'select(.repository == "late" and .state == "PENDING" and .attempts >= 1) | .node')
  [[ "$owner" == node1 || "$owner" == node2 ]]
}
wait_until 30 parked || fail "late:v1's job did not park with its node: $(jobs 1 | jq -c 'select(.repository == "late")')"
survivor=node1
[[ "$owner" == node1 ]] && survivor=node2
k=${owner#node}
pid_var=ferry${k}_PID
kill -KILL "${!pid_var}"
wait "${!pid_var}" 2>/dev/null || true
registry_start late --port "$late_port"
t0=$(date +%s)
wait_until 60 at "$late_ADDR" late:v1 "$TEST_TMP/late.json" ||
  fail "late:v1 did not arrive after $owner died: $(jobs "${survivor#node}" | jq -c 'select(.repository == "late")')"
taken_s=$(($(date +%s) - t0))
((taken_s <= 25)) || fail "late:v1 took ${taken_s}s after $owner's kill -9 (the take-up comes 10 to 15 s after its last beat)"
grep -q "node gone node=$owner" "$TEST_TMP/ferry${survivor#node}.log" &&
  grep -q "took up the jobs of gone nodes jobs=" "$TEST_TMP/ferry${survivor#node}.log" ||
  fail "$survivor's log does not say it took up $owner's jobs"
late_done() { [[ "$(jobs "${survivor#node}" | jq -r 'select(.repository == "late") | .state + " " + .node')" == "COMPLETE $survivor" ]]; }
wait_until 10 late_done || fail "late:v1's job record does not say COMPLETE by $survivor: $(jobs "${survivor#node}" | jq -c 'select(.repository == "late")')"
pass "$survivor took up the job $owner parked, and late:v1 arrived ${taken_s}s after $owner's kill -9"

# Two tags of one image share a job record: later:a's job waits (its entry
# settled), later:b's completes and its record says COMPLETE; a reload drops
# the waiting job from memory, and its claim runs it again (the retry is 60 s away).
fixturegen push --registry "$src_ADDR" --repo later --tag a --seed cl-later --layers 1 --layer-size 16K --compact >"$TEST_TMP/later.json"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$src_ADDR/later:a" "docker://$src_ADDR/later:b"
s=${survivor#node}
notify "$s" "$TEST_TMP/later.json" later a >/dev/null
waits() { jobs "$s" | jq -e 'select(.repository == "later" and .state == "PENDING" and .attempts >= 1)' >/dev/null; }
wait_until 30 waits || fail "later:a's job did not wait: $(jobs "$s" | jq -c 'select(.repository == "later")')"
registry_start later --port "$later_port"
notify "$s" "$TEST_TMP/later.json" later b >/dev/null
wait_until 30 at "$later_ADDR" later:b "$TEST_TMP/later.json" || fail "later:b did not arrive"
says_b() { [[ "$(jobs "$s" | jq -r 'select(.repository == "later") | .state + " " + (.tags | join(","))')" == "COMPLETE b" ]]; }
wait_until 10 says_b || fail "the shared record does not say later:b's job ended: $(jobs "$s" | jq -c 'select(.repository == "later")')"
pid_var=ferry${s}_PID
kill -HUP "${!pid_var}"
wait_until 30 at "$later_ADDR" later:a "$TEST_TMP/later.json" ||
  fail "later:a, waiting when $survivor reloaded, did not arrive (its record said COMPLETE for later:b)"
pass "a waiting job whose record another tag's job completed ran again after a reload, from its claim"

# A clean stop: the node leaves at once (not 10 s later) and its lease goes to the other.
k=${owner#node}
port_var=port$k
ferry_serve_start "ferry$k" "$TEST_TMP/ferry$k.yaml" "${!port_var}"
wait_until 15 both_alive || fail "$owner did not come back: $(st "${survivor#node}" | jq -c .cluster)"
one_poller_now() { (($(polling 1) + $(polling 2) == 1)); }
wait_until 15 one_poller_now || fail "not exactly one poller after $owner came back"
poller=1 other=2
(($(polling 2) == 1)) && poller=2 other=1
pid_var=ferry${poller}_PID
t0=$(date +%s%N)
kill -TERM "${!pid_var}"
left() { [[ "$(st "$other" | jq -c '[.cluster.nodes[].name]')" == "[\"node$other\"]" ]]; }
wait_until 8 left || fail "node$poller, stopped, is still listed: $(st "$other" | jq -c .cluster.nodes)"
wait_until 8 took || fail "node$other did not take the poller's lease node$poller gave back"
left_ms=$((($(date +%s%N) - t0) / 1000000))
wait "${!pid_var}" 2>/dev/null || true
pass "node$poller stopped with SIGTERM: gone from node$other's list and its lease taken within ${left_ms} ms"

# Alone, a node asks no hints: its own flights are the whole picture. An
# image with a 2 MiB layer leaves the bucket as it was (the base at d1).
fixturegen push --registry "$src_ADDR" --repo app --tag alone --seed cl-alone --layers 1 --layer-size 2M --compact >"$TEST_TMP/alone.json"
notify "$other" "$TEST_TMP/alone.json" app alone >/dev/null
wait_until 30 at "$d1_ADDR" app:alone "$TEST_TMP/alone.json" || fail "app:alone did not reach d1: $(jobs "$other" | tail -n 3)"
sleep 2 # a claim is given back 1.5 s after its upload: what it left is in the bucket by now
assert_eq "$(hint_keys)" 1 "the blob hints' keys after a node alone copied a 2 MiB layer"
pass "a node alone copied a 2 MiB layer without asking the other nodes"

# Quorum lost: two of three NATS servers down; a webhook is refused, not lost.
nats_server_kill 2
nats_server_kill 3
fixturegen push --registry "$src_ADDR" --repo app --tag v3 --seed cl-app3 --layers 1 --layer-size 16K --compact >"$TEST_TMP/app3.json"
body=$(jq -c '{events: [{id: "ev-appv3", action: "push", target: {repository: "app", digest: .digest, mediaType: .media_type, size: 500, tag: "v3"}}]}' "$TEST_TMP/app3.json")
code=$(curl -s -o "$TEST_TMP/resp" -w '%{http_code}' --max-time 60 -X POST \
  -H 'Content-Type: application/vnd.docker.distribution.events.v1+json' --data-binary "$body" "$(api "$other")/v1/events/src")
assert_eq "$code" 503 "a webhook while the servers have no quorum ($(cat "$TEST_TMP/resp"))"
nats_server_restart 2
posted() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST \
    -H 'Content-Type: application/vnd.docker.distribution.events.v1+json' --data-binary "$body" "$(api "$other")/v1/events/src")" == 200 ]]
}
wait_until 60 posted || fail "the webhook was not taken once a second NATS server was back"
nats_server_restart 3
# A job that ran while the streams elected their leaders waits for its retry (60 s here).
wait_until 120 at "$d1_ADDR" app:v3 "$TEST_TMP/app3.json" || fail "app:v3 did not reach d1 after the quorum came back"
pass "with 2 of 3 NATS servers down a webhook was answered 503; with one back it was taken, and app:v3 replicated"
