#!/usr/bin/env bash
# `ferry sync` with a destination that is down for the whole run ends, and
# says so: once the destination's circuit opens, the jobs waiting for it end
# FAILED at once with its last error (a run does not wait for probes
# `circuit.open_for` apart: with 12 images and the default settings that was
# more than ten minutes). The healthy destination gets everything.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start up
down_port=$(free_port)
for i in $(seq 1 12); do
  fixturegen push --registry "$src_ADDR" --repo "app$i" --tag v1 --seed "down$i" --layers 1 --layer-size 8K --compact >"$TEST_TMP/app$i.json"
done
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  up: { url: "http://$up_ADDR" }
  down: { url: "http://127.0.0.1:$down_port" }
rules:
  - { name: r, source: src, destinations: [{ registry: up }, { registry: down }] }
YAML

t0=$(_itest_now_ms)
rc=0
timeout 300 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/s.out" 2>"$TEST_TMP/s.err" || rc=$?
took=$(($(_itest_now_ms) - t0))
((rc != 124)) || fail "sync still running after 300 s with a destination down ($(tail -2 "$TEST_TMP/s.err"))"
assert_eq "$rc" 1 "sync with a destination down exits 1"
((took < 90000)) || fail "sync took $took ms with a destination down (want under 90 s)"
note "figure: sync of 12 images with one of two destinations down: $took ms"
assert_eq "$(grep -c '^FAILED *down app' "$TEST_TMP/s.out")" 12 "every image FAILED at down, in the summary ($(cat "$TEST_TMP/s.out"))"
grep -q 'sync finished in .* s: 12 failed$' "$TEST_TMP/s.out" || fail "summary: $(tail -1 "$TEST_TMP/s.out")"
grep -q 'registry unreachable' "$TEST_TMP/s.out" || fail "the reason is not given: $(head -3 "$TEST_TMP/s.out")"
for i in $(seq 1 12); do
  assert_eq "$(skopeo_raw "$up_ADDR/app$i:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/app$i.json")" "app$i at up"
done
pass "sync with a destination down ends in $took ms: 12 FAILED there with the reason, all 12 at the healthy one"
