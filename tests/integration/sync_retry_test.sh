#!/usr/bin/env bash
# A destination down through every retry: ferry sync exits 1 listing the
# FAILED job and why, the other destination completes; `ferry retry` requeues
# the failed job and the next sync completes it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start up
registry_start down
registry_stop down
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 1 --layer-size 20K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  up: { url: "http://$up_ADDR" }
  down: { url: "http://$down_ADDR" }
rules:
  - { name: r, source: src, destinations: [{ registry: up }, { registry: down }] }
YAML

set +e
timeout 120 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s1.err"
rc=$?
set -e
assert_eq "$rc" 1 "sync with a failed job exits 1"
grep -q "^FAILED *down app@$want" "$TEST_TMP/s1.err" || fail "the failed job is not listed: $(cat "$TEST_TMP/s1.err")"
grep -q 'registry unreachable' "$TEST_TMP/s1.err" || fail "the reason is not given: $(cat "$TEST_TMP/s1.err")"
assert_eq "$(skopeo_raw "$up_ADDR/app:v1" | digest_of)" "$want" "the healthy destination completed"
pass "a FAILED job is listed with its reason; the other destination completes"

registry_restart down
"$FERRY" retry -c "$TEST_TMP/ferry.yaml" --dest down >"$TEST_TMP/retry.out"
grep -qx 'requeued 1 failed job' "$TEST_TMP/retry.out" || fail "retry: $(cat "$TEST_TMP/retry.out")"
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s2.err" || fail "sync after retry: $(cat "$TEST_TMP/s2.err")"
assert_eq "$(skopeo_raw "$down_ADDR/app:v1" | digest_of)" "$want" "the retried job completed"
set +e
"$FERRY" retry -c "$TEST_TMP/ferry.yaml" 2>/dev/null
rc=$?
set -e
assert_eq "$rc" 2 "retry without --dest or --all-failed is a usage error"
pass "ferry retry requeues the failed job and the next sync completes it"
