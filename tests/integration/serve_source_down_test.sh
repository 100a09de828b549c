#!/usr/bin/env bash
# A source that cannot be reached is the source's fault, not the
# destination's: the jobs fail (after their retries) without opening the
# destination's circuit, and once a job reads from the source again, the jobs
# that failed while it was down run again on their own. `ferry serve` with
# two quick retries and a circuit that would open at the first destination
# failure; app:v1 is pushed, the source stopped, and app:v1's event posted:
# its job ends FAILED naming the source. The source comes back, app:v2 is
# pushed and notified: both v2 and v1 reach the destination.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
port=$(free_port)
API="http://127.0.0.1:$port"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
circuit: { failures: 1, open_for: 1h }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: dst }] }
YAML
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed down-v1 --layers 1 --layer-size 16K --compact >"$TEST_TMP/v1.json"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

notify() { # IMAGE_JSON TAG
  local body
  body=$(jq -c --arg t "$2" '{events: [{id: ("ev-" + $t), action: "push", target: {repository: "app",
    digest: .digest, mediaType: .media_type, size: 500, tag: $t}}]}' "$1")
  curl -sf --max-time 10 -X POST -H 'Content-Type: application/vnd.docker.distribution.events.v1+json' \
    --data-binary "$body" "$API/v1/events/src" >/dev/null || fail "event for $2 refused"
}
jobs() { timeout 20 "$FERRY" journal -c "$TEST_TMP/ferry.yaml" jobs --json; }
job_of() { jobs | jq -c --arg d "$(jq -r .digest "$1")" 'select(.digest == $d)'; }
at_dst() { [[ "$(skopeo_raw "$dst_ADDR/app:$2" 2>/dev/null | digest_of)" == "$(jq -r .digest "$1")" ]]; }

registry_stop src
notify "$TEST_TMP/v1.json" v1
wait_until 60 bash -c "$(declare -f jobs job_of); FERRY='$FERRY' TEST_TMP='$TEST_TMP' job_of '$TEST_TMP/v1.json' | jq -e '.state == \"FAILED\"' >/dev/null" ||
  fail "app:v1's job did not end FAILED while the source was down: $(job_of "$TEST_TMP/v1.json")"
job_of "$TEST_TMP/v1.json" | jq -e '.last_error | test("source|127.0.0.1:'"$src_PORT"'")' >/dev/null ||
  fail "the failure does not name the source: $(job_of "$TEST_TMP/v1.json")"
circuit=$(curl -sf --max-time 5 "$API/v1/status" | jq -r '.destinations[] | select(.name == "dst") | .circuit')
assert_eq "$circuit" closed "the destination's circuit while the source was down"
if grep -q "circuit open" "$TEST_TMP/ferry.log"; then fail "a circuit opened: $(grep 'circuit open' "$TEST_TMP/ferry.log")"; fi
pass "the source down: app:v1 FAILED naming the source, the destination's circuit closed"

registry_restart src
fixturegen push --registry "$src_ADDR" --repo app --tag v2 --seed down-v2 --layers 1 --layer-size 16K --compact >"$TEST_TMP/v2.json"
notify "$TEST_TMP/v2.json" v2
wait_until 30 at_dst "$TEST_TMP/v2.json" v2 || fail "app:v2 did not reach the destination"
wait_until 30 at_dst "$TEST_TMP/v1.json" v1 ||
  fail "app:v1, FAILED while the source was down, was not run again once the source answered: $(job_of "$TEST_TMP/v1.json")"
job_of "$TEST_TMP/v1.json" | jq -e '.state == "COMPLETE"' >/dev/null || fail "app:v1's job: $(job_of "$TEST_TMP/v1.json")"
pass "the source back: app:v2 replicated, and app:v1 ran again on its own and completed"
