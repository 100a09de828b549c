#!/usr/bin/env bash
# SIGTERM stops `ferry serve` in bounded time even while a large blob is being
# copied to a slow destination, and leaves the job PENDING for the next start.
# The destination sits behind the fault proxy, its blob uploads limited to
# 32 KiB/s (a 64 MiB layer would take over half an hour). Once the job is
# IN_PROGRESS (its record, /v1/status in_flight, and bytes of the layer going
# through the proxy), SIGTERM: the daemon must exit (status 0) within 15 s;
# afterwards no job record is IN_PROGRESS and the big image's job is PENDING;
# with the limit lifted, the next start resumes it and the image arrives.
set -euo pipefail
source "$(dirname "$0")/../../chaos/lib.sh"
require_ferry

registry_start src
registry_start dst
proxy_start p "$dst_ADDR" '* /blobs/uploads/ bandwidth=32K'
FERRY_PORT=$(free_port)
port=$FERRY_PORT
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$p_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML

# The job status records, read-only while serve runs (or after it stopped).
jobs() { timeout 20 "$(ferry_bin)" journal -c "$TEST_TMP/ferry.yaml" jobs --json; }

fixturegen push --registry "$src_ADDR" --repo big/app --tag v1 --seed sigterm --layers 1 --layer-size 64M --compact >"$TEST_TMP/big.json"
want=$(jq -r .digest "$TEST_TMP/big.json")
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

big_job() { jobs | jq -c --arg d "$want" 'select(.destination == "dst" and .repository == "big/app" and .digest == $d)'; }
copying() {
  chaos_api /v1/status | jq -e '.destinations[] | select(.name == "dst") | .in_flight >= 1' >/dev/null &&
    (($(proxy_stats p .bytes_to_upstream) > 256 * 1024)) &&
    big_job | jq -e '.state == "IN_PROGRESS"' >/dev/null
}
wait_until 60 copying ||
  fail "the big image's job never got IN_PROGRESS with its layer moving: $(chaos_api /v1/status | jq -c .destinations) proxy $(proxy_stats p -c) job $(big_job || true)"
note "copying: job $(big_job | jq -c '{state, attempts}'), $(proxy_stats p .bytes_to_upstream) bytes through the proxy"

kill -TERM "$ferry_PID"
sent=$(_itest_now_ms)
exited() { ! kill -0 "$ferry_PID" 2>/dev/null; }
if ! wait_until 15 exited; then
  fail "ferry serve did not exit within 15 s of SIGTERM with a 64 MiB blob going to a slow destination (running $(($(_itest_now_ms) - sent)) ms; last log: $(tail -n 2 "$TEST_TMP/ferry.log" | tr '\n' ' '))"
fi
took=$(($(_itest_now_ms) - sent))
rc=0
wait "$ferry_PID" || rc=$?
note "figure: ferry serve exited ${took} ms after SIGTERM"
assert_eq "$rc" 0 "ferry serve's exit status after SIGTERM"
pass "SIGTERM with a 64 MiB blob in flight to a slow destination: exit 0 in ${took} ms"

jobs >"$TEST_TMP/jobs.after"
note "job records after the stop: $(jq -c '{destination, repository, state, attempts}' "$TEST_TMP/jobs.after" | tr '\n' ' ')"
in_progress=$(jq -s '[.[] | select(.state == "IN_PROGRESS")] | length' "$TEST_TMP/jobs.after")
assert_eq "$in_progress" 0 "job records left IN_PROGRESS after the stop"
assert_eq "$(big_job | jq -r .state)" PENDING "the big image's job after the stop"
pass "after the stop the unfinished job is PENDING, none IN_PROGRESS"

# The next start, with the destination fast again, resumes the job.
proxy_rules p delete
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
arrived() {
  [[ "$(curl -s --max-time 5 "$dst_URL/v2/big/app/manifests/v1" -H 'Accept: application/vnd.oci.image.manifest.v1+json' | digest_of)" == "$want" ]]
}
wait_until 90 arrived || fail "the interrupted job did not finish after the restart: job $(big_job || true)"
assert_eq "$(chaos_api /v1/failures | jq '.failures | length')" 0 "FAILED jobs after the restart"
pass "the next start resumed the job and the image arrived"
