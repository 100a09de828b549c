#!/usr/bin/env bash
# The daemon's HTTP API and metrics against a real replication: one source,
# two destinations, one of them down. /v1/status, /v1/images, /v1/failures,
# /v1/journal and /metrics must say what happened (counts, bytes, the
# failure and its reason); the API token is required and never echoed;
# `ferry status --wait` answers 0 (COMPLETE), 1 (FAILED) and 2 (timeout);
# `ferry retry` on a running daemon requeues through POST /v1/retry.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start d1
registry_start d2
registry_stop d2
TOKEN=api-tok-$RANDOM$RANDOM
port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
api_token: $TOKEN
poll_interval: 1s
retry: { attempts: 2, base: 100ms, max: 200ms }
circuit: { failures: 100, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, repositories: ["**"], destinations: [{ registry: d1 }, { registry: d2, repository: "dr/{repo}" }] }
YAML
chmod 600 "$TEST_TMP/ferry.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
API="http://127.0.0.1:$port"
api() { curl -sS -H "Authorization: Bearer $TOKEN" "$@"; }

fixturegen push --registry "$src_ADDR" --repo team/app --tag v1 --seed 31 --layers 2 --layer-size 300K --compact >"$TEST_TMP/app.json"
digest=$(jq -r .digest "$TEST_TMP/app.json")
blob_bytes=$(jq '[.blobs[].size] | add' "$TEST_TMP/app.json")

# Both destinations settle: d1 COMPLETE, d2 FAILED (it is down; 2 attempts).
settled() {
  local j
  j=$(api "$API/v1/images?repository=team/app&tag=v1") || return 1
  [[ "$(jq -r '.destinations[] | select(.name=="d1") | .state' <<<"$j")" == COMPLETE ]] &&
    [[ "$(jq -r '.destinations[] | select(.name=="d2") | .state' <<<"$j")" == FAILED ]]
}
wait_until 30 settled || fail "not settled: $(api "$API/v1/images?repository=team/app&tag=v1")"
img=$(api "$API/v1/images?repository=team/app&tag=v1")
assert_eq "$(jq -r .digest <<<"$img")" "$digest" "/v1/images resolves the tag to the pushed digest"
assert_eq "$(jq -r '.destinations[] | select(.name=="d2") | .repository' <<<"$img")" "dr/team/app" "d2's repository is mapped"
assert_eq "$(jq -r '.destinations[] | select(.name=="d2") | .attempts' <<<"$img")" 2 "d2 tried twice"
jq -e '.destinations[] | select(.name=="d2") | .last_error | test("127.0.0.1")' <<<"$img" >/dev/null ||
  fail "d2's error does not name the registry: $img"
assert_eq "$(api "$API/v1/images?repository=team/app&digest=$digest" | jq -r '.destinations[] | select(.name=="d1") | .state')" COMPLETE "by digest"
pass "/v1/images: COMPLETE in d1, FAILED in d2 with its reason"

st=$(api "$API/v1/status")
assert_eq "$(jq '.destinations[] | select(.name=="d1") | .completed' <<<"$st")" 1 "d1 completed"
assert_eq "$(jq '.destinations[] | select(.name=="d1") | .failed' <<<"$st")" 0 "d1 failed"
assert_eq "$(jq '.destinations[] | select(.name=="d1") | .bytes' <<<"$st")" "$blob_bytes" "d1 bytes = the image's blob bytes"
assert_eq "$(jq '.destinations[] | select(.name=="d1") | .backlog' <<<"$st")" 0 "d1 backlog"
assert_eq "$(jq '.destinations[] | select(.name=="d1") | .lag_seconds' <<<"$st")" 0 "d1 lag when idle"
assert_eq "$(jq '.destinations[] | select(.name=="d2") | .failed' <<<"$st")" 1 "d2 failed"
assert_eq "$(jq '.destinations[] | select(.name=="d2") | .retries' <<<"$st")" 1 "d2 retried once"
jq -e '.destinations[] | select(.name=="d2") | .last_error != null and .last_error_time != null' <<<"$st" >/dev/null ||
  fail "d2 has no last error: $st"
assert_eq "$(jq '.destinations | length' <<<"$st")" 2 "only destinations are listed as destinations"
assert_eq "$(jq -r '.sources[0].name' <<<"$st")" src "the source"
jq -e '.sources[0].entries >= 1 and .sources[0].last_seq >= 1 and .journal.last_seq >= 1' <<<"$st" >/dev/null ||
  fail "source figures: $st"
pass "/v1/status counts what happened"

fl=$(api "$API/v1/failures")
assert_eq "$(jq '.failures | length' <<<"$fl")" 1 "one failure"
assert_eq "$(jq -r '.failures[0] | "\(.destination) \(.repository) \(.source_repository) \(.digest) \(.tags[0])"' <<<"$fl")" \
  "d2 dr/team/app team/app $digest v1" "the failure names what failed"
jr=$(api "$API/v1/journal?after=0&limit=10")
jq -e --arg d "$digest" '[.entries[] | select(.repository=="team/app" and .tag=="v1" and .digest==$d and .action=="push" and .origin=="poll")] | length == 1' <<<"$jr" >/dev/null ||
  fail "journal: $jr"
pass "/v1/failures and /v1/journal"

m=$(api "$API/metrics")
metric() { awk -v k="$1" '$1 == k { print $2 }' <<<"$m"; }
assert_eq "$(metric 'ferry_jobs{destination="d1",state="complete"}')" 1 "metric: d1 complete"
assert_eq "$(metric 'ferry_jobs{destination="d2",state="failed"}')" 1 "metric: d2 failed"
assert_eq "$(metric 'ferry_retries_total{destination="d2"}')" 1 "metric: d2 retries"
assert_eq "$(metric 'ferry_push_to_replicated_seconds_count{destination="d1"}')" 1 "metric: latency observed"
assert_eq "$(metric 'ferry_push_to_replicated_seconds_bucket{destination="d1",le="+Inf"}')" 1 "metric: +Inf bucket"
assert_eq "$(metric 'ferry_replication_lag_seconds{destination="d1"}')" 0.000 "metric: no lag"
jl=$(metric 'ferry_journal_last_seq')
[[ "$jl" -ge 1 ]] || fail "ferry_journal_last_seq $jl"
sent=$(metric 'ferry_bytes_total{registry="d1",direction="sent"}')
((sent >= blob_bytes)) || fail "d1 sent $sent bytes for $blob_bytes of blobs"
((sent < blob_bytes + 200000)) || fail "d1 sent $sent bytes for $blob_bytes of blobs"
recv=$(metric 'ferry_bytes_total{registry="src",direction="received"}')
((recv >= blob_bytes)) || fail "src received $recv bytes for $blob_bytes of blobs"
refused=$(awk '$1 ~ /^ferry_http_requests_total\{registry="d2",.*code="0"\}$/ { s += $2 } END { print s + 0 }' <<<"$m")
((refused >= 1)) || fail "no failed request counted for d2: $(grep 'registry="d2"' <<<"$m")"
puts=$(awk '$1 ~ /^ferry_http_requests_total\{registry="d1",method="PUT",code="201"\}$/ { print $2 }' <<<"$m")
# 2 layers + config (the upload PUTs) + the manifest PUT (by tag).
assert_eq "$puts" 4 "metric: d1 PUT 201s"
pass "/metrics matches the run"

# Auth: without the token nothing but /healthz, /readyz and the page.
for p in /v1/status /v1/failures "/v1/images?repository=team/app&tag=v1" /metrics; do
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API$p")" 401 "$p without token"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "$API$p")" 401 "$p with a wrong token"
done
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API/healthz")" 200 "/healthz without token"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API/readyz")" 200 "/readyz"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"destination":"d2"}' "$API/v1/retry")" 401 "retry without token"
assert_eq "$(api -s -o /dev/null -w '%{http_code}' -X POST -d 'not json' "$API/v1/retry")" 400 "retry with a bad body"
assert_eq "$(api -s -o /dev/null -w '%{http_code}' -X POST -d '{"destination":"nope"}' "$API/v1/retry")" 404 "retry of an unknown destination"
assert_eq "$(api -s -o /dev/null -w '%{http_code}' "$API/v1/images?repository=../x&tag=v1")" 400 "bad repository"
assert_eq "$(api -s -o /dev/null -w '%{http_code}' "$API/v1/images?repository=team/app&tag=nope")" 404 "unknown tag"
pass "the token guards the API; bad input gets 4xx"

# ferry status: the table, the image, and --wait's three answers.
"$FERRY" status -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/status.out" && rc=0 || rc=$?
assert_eq "$rc" 1 "ferry status exits 1 with a FAILED job"
grep -qE '^d1 +closed +0 ' "$TEST_TMP/status.out" || fail "status table: $(cat "$TEST_TMP/status.out")"
grep -qE '^d2 ' "$TEST_TMP/status.out" || fail "status table lacks d2: $(cat "$TEST_TMP/status.out")"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --image "team/app:v1" >"$TEST_TMP/image.out" || true
grep -qE '^d2 +dr/team/app +FAILED' "$TEST_TMP/image.out" || fail "image table: $(cat "$TEST_TMP/image.out")"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --wait --image "team/app@$digest" --dest d1 --timeout 10 >/dev/null && rc=0 || rc=$?
assert_eq "$rc" 0 "--wait d1: COMPLETE"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --wait --image "team/app@$digest" --dest d1,d2 --timeout 10 2>"$TEST_TMP/wait.err" && rc=0 || rc=$?
assert_eq "$rc" 1 "--wait d1,d2: FAILED in d2"
grep -q 'FAILED in d2' "$TEST_TMP/wait.err" || fail "--wait did not say why: $(cat "$TEST_TMP/wait.err")"
t0=$SECONDS
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --wait --image "team/app@sha256:$(printf '%064d' 0)" --timeout 2 2>/dev/null && rc=0 || rc=$?
assert_eq "$rc" 2 "--wait on an image never pushed: timeout"
((SECONDS - t0 <= 6)) || fail "--wait --timeout 2 took $((SECONDS - t0)) s"
"$FERRY" status --server "$API" --image team/app:v1 >/dev/null 2>&1 && rc=0 || rc=$?
assert_eq "$rc" 1 "--server without a token: the daemon refuses (exit 1)"
FERRY_API_TOKEN=$TOKEN "$FERRY" status --server "$API" --json | jq -e '.destinations | length == 2' >/dev/null ||
  fail "--server with FERRY_API_TOKEN and --json"
pass "ferry status: table, image, and --wait gives 0, 1 and 2"

# d2 comes back; `ferry retry` asks the running daemon, and the image lands.
registry_restart d2
"$FERRY" retry -c "$TEST_TMP/ferry.yaml" --dest d2 >"$TEST_TMP/retry.out" || fail "ferry retry failed: $(cat "$TEST_TMP/retry.out")"
grep -q 'requeued 1 failed job (by the running daemon)' "$TEST_TMP/retry.out" || fail "retry said: $(cat "$TEST_TMP/retry.out")"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --wait --image "team/app:v1" --dest d2 --timeout 20 >/dev/null ||
  fail "d2 not COMPLETE after the retry: $(api "$API/v1/images?repository=team/app&tag=v1")"
assert_eq "$(skopeo_raw "$d2_ADDR/dr/team/app:v1" | digest_of)" "$digest" "d2 holds the image"
assert_eq "$(api "$API/v1/failures" | jq '.failures | length')" 0 "no failure left"
st=$(api "$API/v1/status")
assert_eq "$(jq '.destinations[] | select(.name=="d2") | "\(.failed) \(.failed_total) \(.completed)"' <<<"$st")" '"0 1 1"' \
  "d2: failing now 0, failed since start 1, completed 1"
assert_eq "$(api "$API/metrics" | awk '$1 == "ferry_jobs{destination=\"d2\",state=\"failed\"}" { print $2 }')" 0 "metric: d2 failed now"
pass "ferry retry through the API; the failed destination catches up"

# The token never shows up in what the daemon wrote or answered.
if grep -rq "$TOKEN" "$TEST_TMP/ferry.log" "$TEST_TMP"/*.out "$TEST_TMP"/*.err 2>/dev/null; then
  fail "the API token appears in a log or an answer"
fi
pass "the token is never echoed"
