#!/usr/bin/env bash
# `ferry retry -c FILE --all-failed`, both ways it works:
#  - no daemon: the FAILED jobs of every destination are marked PENDING in the
#    journal itself, and the next `ferry sync` completes them;
#  - a running `ferry serve`: the command asks POST /v1/retry with the
#    explicit {"all_failed": true} (the API refuses an empty selection, {} or
#    no body, so a client's mistake never requeues everything), and the jobs
#    of both destinations are requeued at once and complete, as the daemon's
#    /v1/status and /v1/images and the destination registries themselves say.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start d1
registry_start d2
registry_stop d1
registry_stop d2
TOKEN=retry-tok-$RANDOM$RANDOM
port=$(free_port)
CFG=$TEST_TMP/ferry.yaml
# The circuit never opens (a closing circuit requeues FAILED jobs by itself),
# and two quick attempts make a job FAILED.
cat >"$CFG" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
api_token: $TOKEN
poll_interval: 1s
retry: { attempts: 2, base: 100ms, max: 200ms }
circuit: { failures: 1000, open_for: 1h }
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, repositories: ["**"], destinations: [{ registry: d1 }, { registry: d2, repository: "m/{repo}" }] }
YAML
chmod 600 "$CFG"

# jobs_in STATE : the job records in STATE, "DEST REPO" per line, sorted
jobs_in() {
  "$FERRY" journal -c "$CFG" jobs --state "$1" --json | jq -r '"\(.destination) \(.repository)"' | sort
}

# ---- no daemon: the journal itself ----
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 71 --layers 2 --layer-size 64K --compact >"$TEST_TMP/v1.json"
v1=$(jq -r .digest "$TEST_TMP/v1.json")
"$FERRY" sync -c "$CFG" >"$TEST_TMP/sync1.out" 2>&1 && rc=0 || rc=$?
assert_eq "$rc" 1 "sync with both destinations down exits 1"
assert_eq "$(jobs_in FAILED | tr '\n' ';')" "d1 app;d2 m/app;" "FAILED at both destinations"

registry_restart d1
registry_restart d2
"$FERRY" retry -c "$CFG" --all-failed >"$TEST_TMP/retry1.out" 2>&1 || fail "retry (no daemon): $(cat "$TEST_TMP/retry1.out")"
assert_eq "$(cat "$TEST_TMP/retry1.out")" "requeued 2 failed jobs" "retry without a daemon requeues both"
assert_eq "$(jobs_in PENDING | tr '\n' ';')" "d1 app;d2 m/app;" "both jobs PENDING in the journal"
assert_eq "$(jobs_in FAILED)" "" "no job FAILED any more"
"$FERRY" sync -c "$CFG" >"$TEST_TMP/sync2.out" 2>&1 || fail "sync after the retry: $(cat "$TEST_TMP/sync2.out")"
assert_eq "$(skopeo_raw "$d1_ADDR/app:v1" | digest_of)" "$v1" "d1 holds app:v1"
assert_eq "$(skopeo_raw "$d2_ADDR/m/app:v1" | digest_of)" "$v1" "d2 holds m/app:v1"
pass "no daemon: --all-failed marks every FAILED job PENDING, and the next sync completes them"

# ---- a running daemon: POST /v1/retry ----
registry_stop d1
registry_stop d2
fixturegen push --registry "$src_ADDR" --repo app --tag v2 --seed 72 --layers 2 --layer-size 64K --compact >"$TEST_TMP/v2.json"
v2=$(jq -r .digest "$TEST_TMP/v2.json")
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$CFG" "$port"
API="http://127.0.0.1:$port"
api() { curl -sS -H "Authorization: Bearer $TOKEN" "$@"; }
state_of() { # DEST : v2's state at DEST, by /v1/images
  api "$API/v1/images?repository=app&tag=v2" | jq -r --arg d "$1" '.destinations[] | select(.name==$d) | .state'
}
both() { [[ "$(state_of d1)" == "$1" && "$(state_of d2)" == "$1" ]]; }
wait_until 30 both FAILED || fail "v2 not FAILED at both: $(api "$API/v1/images?repository=app&tag=v2")"
failed_counts() { api "$API/v1/status" | jq -r '[.destinations[] | select(.name=="d1" or .name=="d2") | "\(.name)=\(.failed)"] | sort | join(" ")'; }
assert_eq "$(failed_counts)" "d1=1 d2=1" "/v1/status: one FAILED job at each destination"

registry_restart d1
registry_restart d2
# The API wants an explicit selection: none of these requeues anything.
post() { api -s -o "$TEST_TMP/post.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$1" "$API/v1/retry"; }
assert_eq "$(post '{}')" 400 "POST /v1/retry {} is refused"
assert_eq "$(post '')" 400 "POST /v1/retry with no body is refused"
assert_eq "$(post '{"all_failed": false}')" 400 "all_failed false selects nothing: refused"
assert_eq "$(post '{"all_failed": "yes"}')" 400 "all_failed must be true"
assert_eq "$(post '{"all_failed": true, "destination": "d1"}')" 400 "all_failed with another field is refused"
sleep 1.5
assert_eq "$(failed_counts)" "d1=1 d2=1" "nothing requeued by a refused request (nor by the registries coming back)"
pass "the API refuses an empty or unclear selection"

"$FERRY" retry -c "$CFG" --all-failed >"$TEST_TMP/retry2.out" 2>"$TEST_TMP/retry2.err" ||
  fail "ferry retry --all-failed with the daemon running: $(cat "$TEST_TMP/retry2.out" "$TEST_TMP/retry2.err")"
assert_eq "$(cat "$TEST_TMP/retry2.out")" "requeued 2 failed jobs (by the running daemon)" "the daemon requeued both"
wait_until 30 both COMPLETE || fail "v2 not COMPLETE at both after the retry: $(api "$API/v1/images?repository=app&tag=v2")"
assert_eq "$(failed_counts)" "d1=0 d2=0" "/v1/status: no FAILED job left"
assert_eq "$(skopeo_raw "$d1_ADDR/app:v2" | digest_of)" "$v2" "d1 holds app:v2"
assert_eq "$(skopeo_raw "$d2_ADDR/m/app:v2" | digest_of)" "$v2" "d2 holds m/app:v2"
grep -q 'retry requested dest=d1 ' "$TEST_TMP/ferry.log" || fail "the daemon did not log d1's retry"
grep -q 'retry requested dest=d2 ' "$TEST_TMP/ferry.log" || fail "the daemon did not log d2's retry"
pass "a running daemon: --all-failed requeues the FAILED jobs of both destinations and they complete"
