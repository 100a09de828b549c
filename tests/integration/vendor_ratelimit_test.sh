#!/usr/bin/env bash
# Docker Hub's pull limit, played by the fault proxy: RateLimit-Limit and
# RateLimit-Remaining on every answer, each manifest GET spends one, 429 at
# none left until the window (15 s here) ends. The source holds 16 images,
# whose copies need about 32 manifest GETs (each image's manifest and its
# referrers look) against a limit of 30: `ferry serve` never meets a 429,
# paces what it journals to the budget (the rest waits for the next window),
# replicates every image in the end, and shows the budget in /v1/status.
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry

N=16
registry_start src
registry_start dst
for i in $(seq 1 $N); do
  fixturegen push --registry "$src_ADDR" --repo app --tag "v$i" --seed "$i" --layers 1 --layer-size 1K --compact >/dev/null
done
proxy_start hub "$src_ADDR" '* * ratelimit=30/15'

port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  hub: { url: "http://$hub_ADDR", repositories: [app] }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: hub, source: hub, destinations: [{ registry: dst }] }
YAML
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port" # the pacing is logged at info
API="http://127.0.0.1:$port"

# replicated : how many of the N tags dst holds
replicated() { curl -sf "http://$dst_ADDR/v2/app/tags/list" | jq '.tags // [] | length'; }
refused() { proxy_stats hub .ratelimit.refused_total; }

# 1. The first window: the poller journals what the budget pays for, and stops there.
wait_until 10 bash -c "[ \$(curl -sf $API/v1/status | jq '.sources[0].ratelimit.remaining // -1') -ge 0 ]" ||
  fail "no budget in the status: $(curl -sf "$API/v1/status" | jq -c .sources)"
sleep 4
first=$(replicated)
((first > 0 && first < N)) || fail "after the first rounds $first of $N images are replicated: no pacing"
assert_eq "$(refused)" 0 "429s in the first window"
grep -q 'poll budget low source=hub' "$TEST_TMP/ferry.log" || fail "the pacing was not logged"
status=$(curl -sf "$API/v1/status")
jq -e '.sources[] | select(.name == "hub") | .ratelimit | .limit == 30 and .window_s == 15 and
  (.remaining | type == "number") and .remaining >= 0 and .remaining <= 30 and .deferred > 0' \
  <<<"$status" >/dev/null || fail "the status does not show the budget: $(jq -c .sources <<<"$status")"
note "first window: $first of $N images, $(jq -c '.sources[0].ratelimit' <<<"$status")"
pass "the first window: $first images within the budget, the rest held, the budget in /v1/status"

# 2. The next window gives the budget back: everything arrives, never a 429.
wait_until 40 bash -c "[ \$(curl -sf http://$dst_ADDR/v2/app/tags/list | jq '.tags // [] | length') -ge $N ]" ||
  fail "only $(replicated) of $N images replicated"
assert_eq "$(refused)" 0 "429s over the whole replication"
! grep -q 'TOOMANYREQUESTS\|HTTP 429' "$TEST_TMP/ferry.log" || fail "ferry met a 429: $(grep -m1 '429\|TOOMANY' "$TEST_TMP/ferry.log")"
pass "every image replicated over two windows, no 429 ever met"
