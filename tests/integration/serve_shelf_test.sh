#!/usr/bin/env bash
# Jobs waiting for an open circuit are shelved, not held in memory: past
# ENGINE_SHELF_RESIDENT (256) jobs of one destination, a job behind its open
# circuit keeps only its entry's seq (its record says PENDING, the parked
# cursor stays below it). /v1/status counts them in `backlog` and says how
# many are `shelved`. When the circuit closes they come back as room allows
# and every one completes; a restart while they are shelved loses none.
#
# One source tag per job: bulk/x t1 … tN all name one image (PUT under each
# tag at the source), announced by webhook; the destination d1 is stopped
# before the events, so its circuit opens (failures: 2) and the rest queue.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

N=${SHELF_TAGS:-900}
RESIDENT=256
registry_start src
registry_start d1
port=$(free_port)
API="http://127.0.0.1:$port"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
retry: { attempts: 20, base: 1s, max: 2s }
circuit: { failures: 2, open_for: 2s }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR" }
rules:
  - { name: bulk, source: src, repositories: ["bulk/*"], destinations: [{ registry: d1 }] }
YAML

st() { curl -sf --max-time 5 "$API/v1/status"; }
d1_is() { # JQ_CONDITION on d1's /v1/status object
  local s
  s=$(st) || return 1
  jq -e ".destinations[] | select(.name == \"d1\") | $1" <<<"$s" >/dev/null
}
d1_now() { st | jq -c '.destinations[] | select(.name == "d1") | {backlog, shelved, in_flight, circuit}'; }

fixturegen push --registry "$src_ADDR" --repo bulk/x --tag t0 --seed shelf --layers 1 --layer-size 4K --compact >"$TEST_TMP/img.json"
digest=$(jq -r .digest "$TEST_TMP/img.json")
mtype=$(jq -r .media_type "$TEST_TMP/img.json")
curl -sf --max-time 10 -H "Accept: $mtype" -o "$TEST_TMP/manifest" "$src_URL/v2/bulk/x/manifests/t0"
for ((i = 1; i <= N; i++)); do
  curl -sf --max-time 10 -X PUT -H "Content-Type: $mtype" --data-binary "@$TEST_TMP/manifest" \
    -o /dev/null "$src_URL/v2/bulk/x/manifests/t$i" || fail "cannot tag t$i at the source"
done

registry_stop d1
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
for ((first = 1; first <= N; first += 300)); do
  n=$((N - first + 1 < 300 ? N - first + 1 : 300))
  distribution_events "$TEST_TMP/events.json" bulk bulk/x "$digest" "$mtype" t "$first" "$n"
  assert_eq "$(events_post "$API" "$TEST_TMP/events.json")" 200 "events from t$first"
  assert_eq "$(jq .accepted "$TEST_TMP/resp")" "$n" "events from t$first accepted"
done

# Every job waits for d1; all but the resident few are on the shelf.
shelved_enough=".backlog == $N and .shelved >= $((N - RESIDENT - 8))"
wait_until 30 d1_is "$shelved_enough" || fail "d1's jobs were not shelved: $(d1_now)"
note "d1 down: $(d1_now)"
pass "$N jobs behind d1's open circuit: all in the backlog, all but the resident few shelved"

# A restart while they are shelved: the parked cursor brings them back.
stop_bg ferry
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
wait_until 60 d1_is "$shelved_enough" || fail "after a restart d1's jobs were not all back: $(d1_now)"
note "d1 down, after a restart: $(d1_now)"
pass "a restart while jobs are shelved brings back all $N"

# d1 back: the circuit closes, the shelf drains, every tag arrives.
registry_restart d1
wait_until 120 d1_is '.backlog == 0' || fail "d1's backlog did not drain: $(d1_now)"
curl -sf --max-time 10 "$d1_URL/v2/bulk/x/tags/list?n=10000" >"$TEST_TMP/tags.json"
assert_eq "$(jq '.tags | length' "$TEST_TMP/tags.json")" "$N" "tags at d1"
records() { # STATE : how many job records are in it (one per repository and digest)
  timeout 20 "$(ferry_bin)" journal -c "$TEST_TMP/ferry.yaml" jobs --state "$1" --json | jq -s length
}
note "d1 back: $(d1_now)"
assert_eq "$(records PENDING)" 0 "PENDING job records once d1's backlog drained"
assert_eq "$(records FAILED)" 0 "FAILED job records"
assert_eq "$(skopeo_raw "$d1_ADDR/bulk/x:t$N" | digest_of)" "$digest" "t$N's digest at d1"
pass "d1 back: the shelf drained and all $N tags are at d1"
