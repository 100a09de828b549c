#!/usr/bin/env bash
# A job waiting for its retry lets its journal entry go (the cursor moves on
# for the destinations that work), and a restart still runs it. Two
# destinations: `late` (nothing listens on its port yet) gets app:v1, `ok`
# gets other:v1 and other:v2. While app:v1's job waits for its retry (30 s
# away), the engine's cursor passes app:v1's entry; `ferry serve` is stopped
# (SIGTERM) and `late` comes up on its port; after a restart app:v1 arrives
# there, run again from the durable `engine-parked` cursor.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start ok
late_port=$(free_port)
port=$(free_port)
API="http://127.0.0.1:$port"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
retry: { attempts: 10, base: 60s, max: 60s }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  late: { url: "http://127.0.0.1:$late_port" }
  ok: { url: "http://$ok_ADDR" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: late }] }
  - { name: other, source: src, repositories: ["other"], destinations: [{ registry: ok }] }
YAML
notify() { # IMAGE_JSON REPO TAG
  local body
  body=$(jq -c --arg r "$2" --arg t "$3" '{events: [{id: ("ev-" + $r + $t), action: "push",
    target: {repository: $r, digest: .digest, mediaType: .media_type, size: 500, tag: $t}}]}' "$1")
  curl -sf --max-time 10 -X POST -H 'Content-Type: application/vnd.docker.distribution.events.v1+json' \
    --data-binary "$body" "$API/v1/events/src" | jq -r .last_seq
}
st() { curl -sf --max-time 5 "$API/v1/status"; }
jobs() { timeout 20 "$FERRY" journal -c "$TEST_TMP/ferry.yaml" jobs --json; }
at() { [[ "$(skopeo_raw "$1/$2" 2>/dev/null | digest_of)" == "$(jq -r .digest "$3")" ]]; }

fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed park-app --layers 1 --layer-size 16K --compact >"$TEST_TMP/app.json"
fixturegen push --registry "$src_ADDR" --repo other --tag v1 --seed park-o1 --layers 1 --layer-size 16K --compact >"$TEST_TMP/o1.json"
fixturegen push --registry "$src_ADDR" --repo other --tag v2 --seed park-o2 --layers 1 --layer-size 16K --compact >"$TEST_TMP/o2.json"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

app_seq=$(notify "$TEST_TMP/app.json" app v1)
waiting() { st | jq -e '.destinations[] | select(.name == "late") | .retries >= 1 and .in_flight == 0' >/dev/null; }
wait_until 30 waiting || fail "app:v1's job is not waiting for its retry: $(st | jq -c '.destinations')"
notify "$TEST_TMP/o1.json" other v1 >/dev/null
notify "$TEST_TMP/o2.json" other v2 >/dev/null
wait_until 30 at "$ok_ADDR" other:v2 "$TEST_TMP/o2.json" || fail "other:v2 did not reach ok"
passed() { (($(st | jq .journal.cursor) > app_seq)); }
wait_until 10 passed || fail "the cursor ($(st | jq .journal.cursor)) did not pass app:v1's entry (seq $app_seq) while its job waits"
pass "a job waiting for its retry let its entry go: cursor $(st | jq .journal.cursor) > seq $app_seq"

kill -TERM "$ferry_PID"
wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not stop"
registry_start late --port "$late_port"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
wait_until 30 at "$late_ADDR" app:v1 "$TEST_TMP/app.json" ||
  fail "app:v1 did not reach late after the restart: $(jobs | jq -c 'select(.repository == "app")')"
pass "after a restart the waiting job ran again from the parked cursor and app:v1 arrived"
