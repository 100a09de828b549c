#!/usr/bin/env bash
# Chunked uploads: PATCH with Content-Range in chunks of at least
# --chunk-size, the Location header followed as given, the final PUT with the
# digest; --chunk-max; and
# the monolithic path that needs only two requests per blob.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 2 --layer-size 3500K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")

"$FERRY" copy --json --no-cache --chunk-size 1M "$src_ADDR/app:v1" "$dst_ADDR/app:v1" >"$TEST_TMP/c.json"
assert_eq "$(jq -r .ok "$TEST_TMP/c.json")" true "chunked copy ok"
assert_eq "$(skopeo_raw "$dst_ADDR/app:v1" | digest_of)" "$want" "digest"
# Two layers of ~3.4 MiB in 1 MiB chunks: 4 PATCHes each, plus one for the config.
patches=$(registry_count_requests dst PATCH '/v2/app/blobs/uploads/.*' 202)
assert_eq "$patches" 9 "PATCH requests"
for d in $(jq -r '.blobs[].digest' "$TEST_TMP/app.json"); do
  assert_eq "$(curl -s "$dst_URL/v2/app/blobs/$d" | digest_of)" "$d" "blob $d"
done
pass "chunked upload with Content-Range"

# --chunk-max caps chunks; --chunk-size below it is the floor.
"$FERRY" copy --json --no-cache --upload-mode chunked --chunk-max 2M "$src_ADDR/app:v1" "$dst_ADDR/app2:v1" >"$TEST_TMP/c2.json"
assert_eq "$(registry_count_requests dst PATCH '/v2/app2/blobs/uploads/.*' 202)" 5 "2 MiB chunks"
assert_eq "$(skopeo_raw "$dst_ADDR/app2:v1" | digest_of)" "$want" "digest"
pass "--chunk-max"

# Monolithic is two requests per blob: POST then PUT.
"$FERRY" copy --json --no-cache "$src_ADDR/app:v1" "$dst_ADDR/app3:v1" >"$TEST_TMP/c3.json"
assert_eq "$(registry_count_requests dst POST '/v2/app3/blobs/uploads/')" 3 "one POST per blob"
assert_eq "$(registry_count_requests dst PATCH '/v2/app3/.*')" 0 "no PATCH"
assert_eq "$(registry_count_requests dst PUT '/v2/app3/blobs/uploads/.*digest=.*' 201)" 3 "one PUT per blob"
pass "monolithic upload in two requests"
