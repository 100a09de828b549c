#!/usr/bin/env bash
# A layer that another repository of the destination already holds is
# mounted (POST ?mount=&from= answered 201), not uploaded again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo team-a/web --tag v1 --seed 1 --layers 2 --layer-size 100K \
  --base-seed 77 --base-layers 3 --compact >"$TEST_TMP/a.json"
fixturegen push --registry "$src_ADDR" --repo team-b/api --tag v1 --seed 2 --layers 2 --layer-size 100K \
  --base-seed 77 --base-layers 3 --compact >"$TEST_TMP/b.json"
cache=$TEST_TMP/cache

"$FERRY" copy --json --cache-dir "$cache" "$src_ADDR/team-a/web:v1" "$dst_ADDR/shared/web:v1" >"$TEST_TMP/c1.json"
assert_eq "$(jq -r .blobs_mounted "$TEST_TMP/c1.json")" 0 "nothing to mount the first time"
"$FERRY" copy --json --cache-dir "$cache" "$src_ADDR/team-b/api:v1" "$dst_ADDR/shared/api:v1" >"$TEST_TMP/c2.json"
assert_eq "$(jq -r .ok "$TEST_TMP/c2.json")" true "second copy ok"
assert_eq "$(jq -r .blobs_mounted "$TEST_TMP/c2.json")" 3 "the three base layers are mounted"
assert_eq "$(jq -r .blobs_copied "$TEST_TMP/c2.json")" 3 "config + 2 own layers uploaded"
mounts=$(registry_count_requests dst POST '/v2/shared/api/blobs/uploads/\?mount=.*&from=shared(/|%2F)web' 201)
assert_eq "$mounts" 3 "three mounts answered 201 in the access log"
assert_eq "$(skopeo_raw "$dst_ADDR/shared/api:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/b.json")" "digest"
pass "shared layers mounted from another repository"

# --mount-from names the source repository without a cache.
"$FERRY" copy --json --no-cache --mount-from shared/web "$src_ADDR/team-b/api:v1" "$dst_ADDR/other/api:v1" >"$TEST_TMP/c3.json"
assert_eq "$(jq -r .blobs_mounted "$TEST_TMP/c3.json")" 3 "--mount-from mounts the base layers"
# A mount the registry refuses (202) falls back to a normal upload in that session.
assert_eq "$(jq -r .blobs_copied "$TEST_TMP/c3.json")" 3 "blobs not in shared/web uploaded after a 202"
pass "--mount-from, and 202 continues as an upload"

# Same registry: blobs are mounted from the source repository.
"$FERRY" copy --json --no-cache "$dst_ADDR/shared/web:v1" "$dst_ADDR/copy/web:v1" >"$TEST_TMP/c4.json"
assert_eq "$(jq -r '.blobs_mounted' "$TEST_TMP/c4.json")" 6 "every blob mounted within one registry"
pass "same-registry copy mounts everything"
