#!/usr/bin/env bash
# No head-of-line blocking: jobs waiting for a retry, or for a destination
# whose circuit is open, do not hold the places of runnable work. Two
# destinations: `down` (a port where nothing listens: connections refused) and
# `ok` (a real registry). Rules: bulk/* -> down, app -> ok. 2400 webhook
# events name bulk/x with one real digest under distinct tags (so they do not
# coalesce), with the engine's window at 200 entries (engine_window), so
# the backlog for `down` is twelve windows deep. Once down's circuit is open,
# app:v1 is pushed and its event posted: it must be at `ok`, with its digest,
# within 5 s of the webhook's 200.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

BULK=${HOL_BULK_EVENTS:-2400}
BATCH=400
registry_start src
registry_start ok
down_port=$(free_port)
port=$(free_port)
API="http://127.0.0.1:$port"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
engine_window: 200
retry: { attempts: 20, base: 20s, max: 60s }
circuit: { failures: 3, open_for: 60s }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  down: { url: "http://127.0.0.1:$down_port" }
  ok: { url: "http://$ok_ADDR" }
rules:
  - { name: bulk, source: src, repositories: ["bulk/*"], destinations: [{ registry: down }] }
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: ok }] }
YAML

st() { curl -sf --max-time 5 "$API/v1/status"; }
dest() { st | jq -r --arg n "$1" ".destinations[] | select(.name == \$n) | .$2"; }

fixturegen push --registry "$src_ADDR" --repo bulk/x --tag t0 --seed hol-bulk --layers 1 --layer-size 16K --compact >"$TEST_TMP/bulk.json"
bulk_digest=$(jq -r .digest "$TEST_TMP/bulk.json")
bulk_type=$(jq -r .media_type "$TEST_TMP/bulk.json")

ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

t0=$(_itest_now_ms)
for ((first = 1; first <= BULK; first += BATCH)); do
  distribution_events "$TEST_TMP/bulk_events.json" bulk bulk/x "$bulk_digest" "$bulk_type" t "$first" "$BATCH"
  assert_eq "$(events_post "$API" "$TEST_TMP/bulk_events.json")" 200 "bulk batch from t$first"
  assert_eq "$(jq .accepted "$TEST_TMP/resp")" "$BATCH" "bulk batch from t$first accepted"
done
note "figure: $BULK bulk events posted in $(($(_itest_now_ms) - t0)) ms; last_seq $(jq .last_seq "$TEST_TMP/resp")"

# `down` is refused: its circuit opens (or, failing that, its backlog is large).
down_is() { # JQ_CONDITION on down's /v1/status object
  local s
  s=$(st) || return 1
  jq -e ".destinations[] | select(.name == \"down\") | $1" <<<"$s" >/dev/null
}
wait_until 30 down_is '.circuit == "open"' || wait_until 1 down_is '.backlog >= 200' ||
  fail "down's circuit did not open, nor its backlog grow: $(st | jq -c '.destinations')"
note "down before the push: $(st | jq -c '.destinations[] | select(.name == "down") | {backlog, in_flight, circuit, retries, failed}')"

# A fresh push to the healthy destination.
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed hol-app --layers 1 --layer-size 16K --compact >"$TEST_TMP/app.json"
app_digest=$(jq -r .digest "$TEST_TMP/app.json")
distribution_events "$TEST_TMP/app_event.json" app app "$app_digest" "$(jq -r .media_type "$TEST_TMP/app.json")" v1 -1 1
assert_eq "$(events_post "$API" "$TEST_TMP/app_event.json")" 200 "app:v1 event"
assert_eq "$(jq .accepted "$TEST_TMP/resp")" 1 "app:v1 event accepted"
if ! took=$(manifest_arrives_within 5000 "$ok_URL" app v1 "$app_digest"); then
  # How late it is, for the record (bounded).
  late=""
  late_ms=$(manifest_arrives_within 10000 "$ok_URL" app v1 "$app_digest") && late=" (it arrived $late_ms ms later)"
  note "down after the push: $(st | jq -c '.destinations[] | select(.name == "down") | {backlog, in_flight, circuit, retries}'); journal cursor $(st | jq .journal.cursor)"
  fail "app:v1 was not at ok within 5 s of its event being accepted, with $BULK jobs waiting for down$late"
fi
note "figure: app:v1 at ok $took ms after its event was accepted ($BULK jobs waiting for down, window 200)"
assert_eq "$(skopeo_raw "$ok_ADDR/app:v1" | digest_of)" "$app_digest" "app:v1's digest at ok"
pass "a push to a healthy destination replicated in $took ms behind $BULK waiting jobs"
