#!/usr/bin/env bash
# `ferry sync`'s exit status tells the truth, whoever made the failure: an
# image broken at the source (a layer deleted there) is FAILED; every later
# sync with nothing changed requeues it, still exits 1 and names it again on
# stdout (human form and --json); `ferry verify` reports it missing and
# `ferry status` FAILED. Once the source is fixed (the same image pushed
# again) the next sync completes it: exit 0, ok, and verify is clean.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --delete
registry_start dst
push_broken() {
  fixturegen push --registry "$src_ADDR" --repo broken --tag v1 --seed broken --layers 2 --layer-size 8K \
    --compact >"$TEST_TMP/broken.json"
}
push_broken
fixturegen push --registry "$src_ADDR" --repo fine --tag v1 --seed fine --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/fine.json"
want=$(jq -r .digest "$TEST_TMP/broken.json")
layer=$(jq -r '[.blobs[] | select(.media_type | test("layer"))][1].digest' "$TEST_TMP/broken.json")
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/broken/blobs/$layer")
assert_eq "$code" 202 "a layer of broken:v1 deleted at the source"

port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML

# run_sync N [ARGS...]: ferry sync, bounded; stdout sN.out, stderr sN.err, status rc.
run_sync() {
  local n=$1
  shift
  rc=0
  timeout 120 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" "$@" >"$TEST_TMP/s$n.out" 2>"$TEST_TMP/s$n.err" || rc=$?
  note "sync $n: exit $rc; stdout: $(head -c 600 "$TEST_TMP/s$n.out")"
  ((rc != 124)) || fail "sync $n did not return within 120 s"
}

# names_broken N: sync N's stdout has a FAILED line for dst's broken:v1 and the failure count 1.
names_broken() {
  local out="$TEST_TMP/s$1.out"
  grep -E '(^|[^A-Za-z])FAILED([^A-Za-z]|$)' "$out" | grep -F dst | grep -E "(^|[^A-Za-z0-9_/-])broken([@: ]|$)" |
    grep -qE "$want|broken:v1|tag v1" ||
    fail "sync $1: no FAILED line naming dst and broken on stdout; stdout: $(cat "$out"); stderr: $(grep -E 'FAILED|sync (finished|complete)' "$TEST_TMP/s$1.err")"
  grep -qE '^sync finished in [0-9.]+ s: 1 failed$' "$out" ||
    fail "sync $1: no 'sync finished in X s: 1 failed' line on stdout: $(cat "$out")"
}

run_sync 1
assert_eq "$rc" 1 "first sync exit status"
names_broken 1
assert_eq "$(skopeo_raw "$dst_ADDR/fine:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/fine.json")" \
  "fine:v1 replicated"
pass "first sync: exit 1, broken:v1 named FAILED on stdout"

run_sync 2
assert_eq "$rc" 1 "second sync (nothing changed) exit status"
names_broken 2
pass "second sync, nothing changed: still exit 1, broken:v1 named again"

run_sync 3 --json
assert_eq "$rc" 1 "sync --json exit status"
jq -e . "$TEST_TMP/s3.out" >/dev/null || fail "sync --json: stdout is not JSON: $(cat "$TEST_TMP/s3.out")"
assert_eq "$(jq -r .ok "$TEST_TMP/s3.out")" false "sync --json: .ok"
assert_eq "$(jq -c '[.failed[] | [.destination, .repository, .digest, .tag]]' "$TEST_TMP/s3.out")" \
  "[[\"dst\",\"broken\",\"$want\",\"v1\"]]" "sync --json: .failed"
jq -e '.failed[0].error | type == "string" and length > 0' "$TEST_TMP/s3.out" >/dev/null ||
  fail "sync --json: no error for the failed job: $(cat "$TEST_TMP/s3.out")"
pass "sync --json: ok false, the failed job with destination, repository, digest, tag and error"

# ferry verify agrees: broken:v1 is missing at dst, and nothing else is.
rc=0
timeout 60 "$FERRY" verify -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/v1.out" 2>"$TEST_TMP/v1.err" || rc=$?
assert_eq "$rc" 1 "verify exit status ($(cat "$TEST_TMP/v1.err"))"
assert_eq "$(cat "$TEST_TMP/v1.out")" "drift dst broken:v1 missing source $want" "verify's drift"
rc=0
timeout 60 "$FERRY" verify -c "$TEST_TMP/ferry.yaml" --json >"$TEST_TMP/v2.out" 2>"$TEST_TMP/v2.err" || rc=$?
assert_eq "$rc" 1 "verify --json exit status"
assert_eq "$(jq -sc '[.[] | select(.type == "drift") | [.destination, .repository, .tag, .kind, .digest]]' "$TEST_TMP/v2.out")" \
  "[[\"dst\",\"broken\",\"v1\",\"missing\",\"$want\"]]" "verify --json drift"
pass "ferry verify reports broken:v1 missing"

# ferry status agrees (through the daemon, which reads the same job records).
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
# shellcheck disable=SC2317 # called through wait_until
status_failed() {
  "$FERRY" status -c "$TEST_TMP/ferry.yaml" --image broken:v1 --json >"$TEST_TMP/st.json" 2>&1 || true
  jq -e --arg d "$want" '.destinations[] | select(.name == "dst") | .state == "FAILED" and .digest == $d' \
    "$TEST_TMP/st.json" >/dev/null 2>&1
}
wait_until 30 status_failed || fail "ferry status --image broken:v1: $(cat "$TEST_TMP/st.json")"
rc=0
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --image broken:v1 >"$TEST_TMP/st.out" 2>&1 || rc=$?
grep -E '^dst ' "$TEST_TMP/st.out" | grep -q FAILED || fail "ferry status --image broken:v1: $(cat "$TEST_TMP/st.out")"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --json >"$TEST_TMP/status.json" || true
assert_eq "$(jq '.destinations[] | select(.name == "dst") | .failed' "$TEST_TMP/status.json")" 1 \
  "ferry status --json: dst's failed count"
rc=0
"$FERRY" status -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/table.out" 2>&1 || rc=$?
assert_eq "$rc" 1 "ferry status exit status with a FAILED job ($(cat "$TEST_TMP/table.out"))"
stop_bg ferry
pass "ferry status reports broken:v1 FAILED"

# Fixed at the source: the same image pushed again (same digest).
push_broken
assert_eq "$(jq -r .digest "$TEST_TMP/broken.json")" "$want" "the same image pushed again"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$src_URL/v2/broken/blobs/$layer")
assert_eq "$code" 200 "the layer is back at the source"
run_sync 4 --json
assert_eq "$rc" 0 "sync after the fix: exit status"
assert_eq "$(jq -c '[.ok, .failed]' "$TEST_TMP/s4.out")" '[true,[]]' "sync after the fix: ok, nothing failed"
assert_eq "$(skopeo_raw "$dst_ADDR/broken:v1" | digest_of)" "$want" "broken:v1 replicated after the fix"
rc=0
timeout 60 "$FERRY" verify -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/v3.out" 2>"$TEST_TMP/v3.err" || rc=$?
assert_eq "$rc" 0 "verify after the fix: exit status ($(cat "$TEST_TMP/v3.out"))"
assert_eq "$(cat "$TEST_TMP/v3.out")" "" "verify after the fix: no drift"
run_sync 5
assert_eq "$rc" 0 "a sync with nothing left to do: exit status"
grep -qE '^sync complete in [0-9.]+ s: 0 failed$' "$TEST_TMP/s5.out" ||
  fail "no 'sync complete in X s: 0 failed' line on stdout: $(cat "$TEST_TMP/s5.out")"
pass "fixed at the source: the next sync completes it (exit 0), verify is clean"
