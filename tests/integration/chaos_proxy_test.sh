#!/usr/bin/env bash
# The fault proxy (build/ferry-chaos-proxy) in front of a real registry: with
# no rules it is transparent (skopeo copies through it, keep-alive works);
# each fault kind really happens, as a client sees it; rules change at run
# time through the control endpoint, and a bad rule is refused in one line.
set -euo pipefail
source "$(dirname "$0")/../../chaos/lib.sh"
require_ferry
PROXY=$(chaos_proxy_bin)

registry_start src
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 2 --layer-size 2M --compact >"$TEST_TMP/app.json"
blob=$(jq -r '[.blobs[] | select(.size > 1000000)][0].digest' "$TEST_TMP/app.json")
size=$(jq -r "[.blobs[] | select(.digest == \"$blob\")][0].size" "$TEST_TMP/app.json")
proxy_start px "$src_ADDR" --seed 42
blob_url="http://$px_ADDR/v2/app/blobs/$blob"
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
get() { # FILE URL [curl options]: exit status of curl, body to FILE
  local out=$1 url=$2 rc=0
  shift 2
  curl -s -o "$out" --max-time 20 "$@" "$url" || rc=$?
  echo "$rc"
}

# --- Bad rules: one line on the command line (exit 2) and at the control endpoint (400).
rc=0
"$PROXY" --listen 127.0.0.1:0 --upstream "$src_ADDR" --rule 'GET /blobs/ flop rate=1' 2>"$TEST_TMP/bad.err" || rc=$?
assert_eq "$rc" 2 "a bad rule exits 2"
assert_eq "$(wc -l <"$TEST_TMP/bad.err")" 1 "the error is one line"
grep -q "bad rule 'GET /blobs/ flop rate=1': unknown action 'flop'" "$TEST_TMP/bad.err" ||
  fail "unclear error: $(cat "$TEST_TMP/bad.err")"
for bad in 'GET /x status=99' 'GET /x rate=2 flip' 'get /x flip' 'GET ~( flip' 'GET /x' 'GET /x flip truncate' 'GET /x retry_after=1 flip'; do
  code=$(curl -s -o "$TEST_TMP/bad.json" -w '%{http_code}' -X PUT --data-binary "$bad" "$px_CONTROL/rules")
  assert_eq "$code" 400 "control refuses '$bad'"
  jq -e '.error | startswith("bad rule")' "$TEST_TMP/bad.json" >/dev/null || fail "no error for '$bad': $(cat "$TEST_TMP/bad.json")"
done
assert_eq "$(proxy_stats px .rules)" 0 "a refused batch changes nothing"
pass "bad rules are refused with one line"

# --- Transparent: skopeo copies the image through the proxy, bytes identical.
skopeo copy --all --preserve-digests --src-tls-verify=false \
  "docker://$px_ADDR/app:v1" "dir:$TEST_TMP/through" >/dev/null 2>"$TEST_TMP/skopeo.err" ||
  fail "skopeo copy through the proxy failed: $(tail -n 3 "$TEST_TMP/skopeo.err")"
assert_eq "$(digest_of <"$TEST_TMP/through/manifest.json")" "$(jq -r .digest "$TEST_TMP/app.json")" "manifest through the proxy"
for d in $(jq -r '.blobs[].digest' "$TEST_TMP/app.json"); do
  assert_eq "$(digest_of <"$TEST_TMP/through/${d#sha256:}")" "$d" "blob through the proxy"
done
# Keep-alive: three requests on one connection, each answered.
before=$(proxy_stats px .connections)
codes=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} ' -H "Accept: $OCI_MANIFEST" \
  "http://$px_ADDR/v2/" "$blob_url" "http://$px_ADDR/v2/app/manifests/v1")
assert_eq "$codes" "200 200 200 " "keep-alive answers"
assert_eq "$(($(proxy_stats px .connections) - before))" 1 "three requests on one connection"
assert_eq "$(proxy_stats px .faults_total)" 0 "no fault without rules"
pass "transparent without rules (skopeo copy, keep-alive)"

# --- status=503 at a rate: the seeded draw fails about that fraction.
proxy_rules px put '* /v2/app/manifests/ status=503 rate=0.25'
n503=0
for _ in $(seq 1 80); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $OCI_MANIFEST" "http://$px_ADDR/v2/app/manifests/v1")
  [[ "$code" == 503 ]] && n503=$((n503 + 1))
  [[ "$code" == 503 || "$code" == 200 ]] || fail "unexpected $code"
done
((n503 >= 8 && n503 <= 35)) || fail "rate 0.25 of 80 gave $n503 503s"
assert_eq "$(proxy_stats px '.status_injected["503"]')" "$n503" "503s counted"
assert_eq "$(proxy_stats px '.rules')" 1 "one rule"
pass "status=503 rate=0.25: $n503 of 80"

# --- 429 with Retry-After, count-limited, then the request goes through.
proxy_rules px put 'GET ~^/v2/app/blobs/sha256:[0-9a-f]{64}$ status=429 retry_after=1 count=2'
for i in 1 2; do
  curl -s -D "$TEST_TMP/h429" -o /dev/null "$blob_url"
  grep -q '^HTTP/1.1 429' "$TEST_TMP/h429" || fail "429 #$i: $(head -n 1 "$TEST_TMP/h429")"
  grep -qi '^Retry-After: 1' "$TEST_TMP/h429" || fail "429 without Retry-After"
done
assert_eq "$(get "$TEST_TMP/b" "$blob_url")" 0 "third GET after count=2"
assert_eq "$(digest_of <"$TEST_TMP/b")" "$blob" "blob after the 429s"
pass "429 with Retry-After, twice (count=2), then through"

# --- flip: one byte differs, length the same.
proxy_rules px put 'GET /blobs/ flip'
assert_eq "$(get "$TEST_TMP/flipped" "$blob_url")" 0 "flipped GET completes"
assert_eq "$(stat -c %s "$TEST_TMP/flipped")" "$size" "flipped length"
assert_ne "$(digest_of <"$TEST_TMP/flipped")" "$blob" "flipped digest"
assert_eq "$(cmp -l "$TEST_TMP/b" "$TEST_TMP/flipped" | wc -l)" 1 "exactly one byte differs"
assert_eq "$(proxy_fault_count px flip)" 1 "flip counted"
pass "flip: one byte of $size differs"

# --- truncate: the body is shorter, with a matching length (curl sees no error).
proxy_rules px put 'GET /blobs/ truncate'
assert_eq "$(get "$TEST_TMP/short" "$blob_url")" 0 "truncated GET completes"
assert_eq "$(stat -c %s "$TEST_TMP/short")" "$((size / 2))" "truncated length"
cmp -s -n "$((size / 2))" "$TEST_TMP/b" "$TEST_TMP/short" || fail "truncated body is not a prefix"
pass "truncate: $((size / 2)) of $size bytes"

# --- reset mid-body: curl sees a partial transfer or a reset.
proxy_rules px put 'GET /blobs/ reset=mid'
rc=$(get "$TEST_TMP/mid" "$blob_url")
[[ "$rc" == 18 || "$rc" == 56 ]] || fail "reset=mid: curl exit $rc, want 18 or 56"
got=$(stat -c %s "$TEST_TMP/mid")
((got > 0 && got < size)) || fail "reset=mid: got $got bytes of $size"
# reset before the answer: nothing comes back.
proxy_rules px put 'HEAD * reset=before'
rc=$(get /dev/null "http://$px_ADDR/v2/app/manifests/v1" -I)
[[ "$rc" == 52 || "$rc" == 56 ]] || fail "reset=before: curl exit $rc, want 52 or 56"
# reset mid-upload: the request body is cut.
head -c 300000 /dev/urandom >"$TEST_TMP/up"
loc=$(curl -s -D - -o /dev/null -X POST "http://$src_ADDR/v2/app/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
proxy_rules px put 'PUT /uploads/ reset=mid'
up_digest=$(digest_of <"$TEST_TMP/up")
rc=$(get /dev/null "http://$px_ADDR${loc#http://$src_ADDR}&digest=$up_digest" -X PUT --data-binary "@$TEST_TMP/up" -H 'Content-Type: application/octet-stream')
[[ "$rc" != 0 ]] || fail "reset=mid on an upload: curl succeeded"
assert_eq "$(proxy_fault_count px reset_mid)" 2 "mid resets counted"
assert_eq "$(proxy_fault_count px reset_before)" 1 "reset before counted"
pass "reset: mid-body (download and upload) and before the answer"

# --- flip in an upload: the registry refuses the blob (digest mismatch).
proxy_rules px put 'PUT /uploads/ flip'
loc=$(curl -s -D - -o /dev/null -X POST "http://$px_ADDR/v2/app/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
code=$(curl -s -o "$TEST_TMP/put.json" -w '%{http_code}' -X PUT --data-binary "@$TEST_TMP/up" \
  -H 'Content-Type: application/octet-stream' "$loc&digest=$up_digest")
assert_eq "$code" 400 "registry refuses a flipped upload"
grep -q DIGEST_INVALID "$TEST_TMP/put.json" || fail "not a digest error: $(cat "$TEST_TMP/put.json")"
pass "flip in an upload: the registry answers DIGEST_INVALID"

# --- delay: at least N ms more.
proxy_rules px put 'GET /v2/ delay_ms=600'
t=$(curl -s -o /dev/null -w '%{time_total}' "http://$px_ADDR/v2/")
awk -v t="$t" 'BEGIN { exit !(t >= 0.6) }' || fail "delay_ms=600: took $t s"
pass "delay_ms=600: $t s"

# --- bandwidth: throughput stays under the limit.
proxy_rules px put 'GET /blobs/ bandwidth=1M'
speed=$(curl -s -o "$TEST_TMP/slow" -w '%{speed_download}' --max-time 20 "$blob_url")
assert_eq "$(digest_of <"$TEST_TMP/slow")" "$blob" "paced blob intact"
awk -v s="$speed" 'BEGIN { exit !(s <= 1.2 * 1048576 && s >= 0.5 * 1048576) }' ||
  fail "bandwidth=1M: $speed bytes/s"
pass "bandwidth=1M: $speed bytes/s"

# --- blackhole: no answer until curl gives up.
proxy_rules px put '* /v2/ blackhole'
rc=$(get /dev/null "http://$px_ADDR/v2/" --max-time 2)
assert_eq "$rc" 28 "blackhole: curl times out"
# Installed at run time, it swallows a transfer in flight too.
proxy_rules px put 'GET /blobs/ bandwidth=200K'
curl -s -o "$TEST_TMP/cut" --max-time 5 "$blob_url" >/dev/null 2>&1 &
curl_pid=$!
sleep 1
proxy_rules px put '* * blackhole'
rc=0
wait "$curl_pid" || rc=$?
assert_eq "$rc" 28 "a transfer in flight is blackholed"
got=$(stat -c %s "$TEST_TMP/cut")
((got < size / 2)) || fail "the blackholed transfer got $got bytes"
pass "blackhole: requests and transfers in flight time out"

# --- Cleared: transparent again; the counters add up.
proxy_rules px delete
assert_eq "$(get "$TEST_TMP/again" "$blob_url")" 0 "GET after clearing"
assert_eq "$(digest_of <"$TEST_TMP/again")" "$blob" "blob after clearing"
proxy_stats px '.faults' >"$TEST_TMP/faults.json"
note "faults: $(jq -c . "$TEST_TMP/faults.json")"
jq -e '.status >= 10 and .flip == 2 and .truncate == 1 and .blackhole >= 2 and .delay == 1 and .bandwidth >= 2' \
  "$TEST_TMP/faults.json" >/dev/null || fail "fault counters: $(jq -c . "$TEST_TMP/faults.json")"
pass "cleared rules: transparent again; every fault counted"

# A clean stop (under the sanitizer build: no leak, no error reported).
stop_bg px
if grep -q 'Sanitizer' "$TEST_TMP/px.log"; then
  fail "the proxy's sanitizer report: $(grep -A 12 'Sanitizer' "$TEST_TMP/px.log" | head -n 20)"
fi
pass "the proxy stops cleanly"
