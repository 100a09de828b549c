#!/usr/bin/env bash
# A source blob whose bytes do not match its digest is refused: the copy
# fails naming the blob, the destination never completes that blob, and the
# tag is never pushed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 3 --layer-size 2M --compact >"$TEST_TMP/app.json"
bad=$(jq -r '[.blobs[] | select(.size > 1000000)][1].digest' "$TEST_TMP/app.json")
fixturegen corrupt-blob --storage "$src_STORAGE" --digest "$bad" >/dev/null
[ "$(curl -s "$src_URL/v2/app/blobs/$bad" | digest_of)" != "$bad" ] || fail "fixture not corrupted"

set +e
"$FERRY" copy --no-cache "$src_ADDR/app:v1" "$dst_ADDR/app:v1" 2>"$TEST_TMP/err"
rc=$?
set -e
assert_eq "$rc" 1 "corrupt source exits 1"
assert_eq "$(wc -l <"$TEST_TMP/err")" 1 "one line"
grep -q "blob $bad .*does not match its digest" "$TEST_TMP/err" || fail "error does not name the blob: $(cat "$TEST_TMP/err")"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$dst_URL/v2/app/blobs/$bad")
assert_eq "$code" 404 "the corrupt blob never completed at the destination"
assert_eq "$(registry_count_requests dst PUT "/v2/app/blobs/uploads/.*digest=$bad.*" '201')" 0 "no completed upload of it"
assert_eq "$(registry_count_requests dst PUT '/v2/app/manifests/.*')" 0 "no manifest or tag pushed"
pass "corrupt blob refused, nothing half-written"
