#!/usr/bin/env bash
# A job cut short by SIGTERM is no failure: while every request to the
# destination answers 503 (the chaos proxy), `ferry serve` is stopped with a
# job in flight. It exits 0, the job is left PENDING (not FAILED), and the next
# start, with the destination healthy, replicates the image without any
# `ferry retry` (the poller has already recorded the tag, so nothing else
# would bring it back).
set -euo pipefail
source "$(dirname "$0")/../../chaos/lib.sh"
require_ferry

registry_start src
registry_start dst
proxy_start p "$dst_ADDR" '* * status=503'
FERRY_PORT=$(free_port)
port=$FERRY_PORT
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
retry: { attempts: 5, base: 1s, max: 2s }
circuit: { failures: 100, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$p_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML
fixturegen push --registry "$src_ADDR" --repo drain/app --tag v1 --seed drain --layers 2 --layer-size 64K --compact >"$TEST_TMP/app.json"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

in_flight() {
  chaos_api /v1/status | jq -e '.destinations[] | select(.name == "dst") | .in_flight >= 1' >/dev/null &&
    (($(proxy_fault_count p status) > 0))
}
wait_until 20 in_flight || fail "no job in flight against the failing destination"
kill -TERM "$ferry_PID"
rc=0
deadline=$((SECONDS + 60))
while kill -0 "$ferry_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
kill -0 "$ferry_PID" 2>/dev/null && fail "ferry serve did not exit within 60 s of SIGTERM"
wait "$ferry_PID" || rc=$?
assert_eq "$rc" 0 "ferry serve exits 0 after SIGTERM"
grep -aq 'job interrupted by shutdown' "$TEST_TMP/ferry.log" || fail "the cut-short job was not logged as interrupted"
if grep -aE 'level=error|error .*job failed dest=' "$TEST_TMP/ferry.log" | grep -aq 'job failed dest='; then
  fail "a job cut short by the shutdown was recorded FAILED: $(grep -a 'job failed dest=' "$TEST_TMP/ferry.log" | head -n 1)"
fi
pass "SIGTERM with a job in flight: exit 0, the job is not FAILED"

# The destination heals; the next start finishes the job on its own.
proxy_rules p delete
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
assert_eq "$(chaos_api /v1/failures | jq '.failures | length')" 0 "no FAILED job after the restart"
want=$(jq -r .digest "$TEST_TMP/app.json")
arrived() {
  [[ "$(curl -s "$dst_URL/v2/drain/app/manifests/v1" -H 'Accept: application/vnd.oci.image.manifest.v1+json' | digest_of)" == "$want" ]]
}
wait_until 30 arrived || fail "the interrupted job did not run again after the restart"
pass "the interrupted job ran again at the next start and the image arrived"
