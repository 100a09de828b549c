#!/usr/bin/env bash
# Conditional tag listings: the fault proxy gives tag listings an ETag and
# answers If-None-Match with 304. Once a repository is replicated, the
# poller's later rounds send no manifest HEAD for it while its listing does
# not change; a new tag changes the listing and is found at the next round;
# a tag moved behind an unchanged listing (same names, another digest) is
# found by the full sweep every 10th round.
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry

registry_start src
registry_start dst
for i in 1 2 3; do
  fixturegen push --registry "$src_ADDR" --repo app --tag "v$i" --seed "$i" --layers 1 --layer-size 2K --compact >/dev/null
done
proxy_start hub "$src_ADDR" 'GET ~/tags/list etag'

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
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port" # "poll round done" is info

rounds() { grep -c 'poll round done' "$TEST_TMP/ferry.log" || true; }
wait_rounds() { # N : until N rounds are done
  wait_until 20 bash -c "[ \$(grep -c 'poll round done' '$TEST_TMP/ferry.log') -ge $1 ]" ||
    fail "round $1 did not come ($(rounds) done)"
}
heads() { registry_count_requests src HEAD '/v2/app/manifests/.*' '.*' 'ferry.*'; }
listings() { registry_count_requests src GET '/v2/app/tags/list.*' '.*' 'ferry.*'; }
# at_dst TAG DIGEST : dst's app:TAG names DIGEST
at_dst() { [[ "$(skopeo_raw "$dst_ADDR/app:$1" 2>/dev/null | digest_of)" == "$2" ]]; }
src_digest() { skopeo_raw "$src_ADDR/app:$1" | digest_of; }

# 1. Backfill, then quiet rounds: listings go on, no HEAD.
for i in 1 2 3; do
  wait_until 20 at_dst "v$i" "$(src_digest "v$i")" || fail "v$i was not replicated"
done
r0=$(rounds)
# The quiet rounds must end before the 11th, the first sweep after the backfill.
((r0 + 1 + 3 < 11)) || fail "the backfill took $r0 rounds: too slow for this test"
wait_rounds $((r0 + 1)) # a round that started after the copies ended
h0=$(heads) l0=$(listings)
wait_rounds $((r0 + 1 + 3))
assert_eq "$(heads)" "$h0" "manifest HEADs in three rounds of an unchanged listing"
(($(listings) - l0 >= 3)) || fail "the listing was not asked every round ($(($(listings) - l0)) in three)"
(($(proxy_stats hub .etag.not_modified) >= 3)) || fail "no 304s: $(proxy_stats hub .etag)"
pass "an unchanged listing: answered 304, and no tag HEADed again"

# 2. A new tag changes the listing: found at the next round.
fixturegen push --registry "$src_ADDR" --repo app --tag v4 --seed 4 --layers 1 --layer-size 2K --compact >/dev/null
wait_until 10 at_dst v4 "$(src_digest v4)" || fail "a new tag was not found"
pass "a new tag changes the listing and is found"

# 3. A tag moved behind an unchanged listing: found by the sweep (every 10th round).
r1=$(rounds)
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 11 --layers 1 --layer-size 2K --compact >/dev/null
moved=$(src_digest v1)
wait_until 25 at_dst v1 "$moved" || fail "a moved tag was not found by the sweep ($(rounds) rounds)"
note "the moved tag arrived after $(($(rounds) - r1)) rounds"
(($(rounds) - r1 <= 12)) || fail "the moved tag took $(($(rounds) - r1)) rounds"
pass "a tag moved behind an unchanged listing is found by the full sweep"
