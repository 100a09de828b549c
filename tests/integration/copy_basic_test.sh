#!/usr/bin/env bash
# ferry copy of a single image: digests preserved byte for byte, every blob at
# the destination, the summary telling the truth, a second copy that sends no
# upload and no manifest PUT, --platform, and clear errors.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo team/app --tag v1 --docker --layers 3 \
  --layer-size 300K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")

# 1. First copy: everything moves.
"$FERRY" copy --json --no-cache "$src_ADDR/team/app:v1" "$dst_ADDR/mirror/app" >"$TEST_TMP/c1.json"
assert_eq "$(jq -r .ok "$TEST_TMP/c1.json")" true "first copy ok"
assert_eq "$(jq -r .digest "$TEST_TMP/c1.json")" "$want" "summary digest"
assert_eq "$(jq -r .blobs_copied "$TEST_TMP/c1.json")" 4 "config + 3 layers copied"
assert_eq "$(skopeo_raw "$dst_ADDR/mirror/app:v1" | digest_of)" "$want" "destination tag digest"
for d in $(jq -r '.blobs[].digest' "$TEST_TMP/app.json"); do
  got=$(curl -s "http://$dst_ADDR/v2/mirror/app/blobs/$d" | digest_of)
  assert_eq "$got" "$d" "blob $d content at destination"
done
pass "image copied byte for byte"

# 2. Second copy: HEADs only; no upload session, no blob or manifest PUT.
posts_before=$(registry_count_requests dst POST '/v2/.*')
puts_before=$(registry_count_requests dst 'PUT|PATCH' '/v2/.*')
"$FERRY" copy --json --no-cache "$src_ADDR/team/app:v1" "$dst_ADDR/mirror/app" >"$TEST_TMP/c2.json"
assert_eq "$(jq -r .blobs_copied "$TEST_TMP/c2.json")" 0 "re-copy copies no blob"
assert_eq "$(jq -r .manifests_pushed "$TEST_TMP/c2.json")" 0 "re-copy pushes no manifest"
assert_eq "$(registry_count_requests dst POST '/v2/.*')" "$posts_before" "re-copy opened no upload"
assert_eq "$(registry_count_requests dst 'PUT|PATCH' '/v2/.*')" "$puts_before" "re-copy sent no PUT"
pass "re-copy is a no-op"

# 3. The destination tag can differ; a source by digest copies that digest.
"$FERRY" copy --no-cache "$src_ADDR/team/app@$want" "$dst_ADDR/mirror/app:stable" 2>"$TEST_TMP/c3.err"
grep -q '^copied ' "$TEST_TMP/c3.err" || fail "plain summary line missing: $(cat "$TEST_TMP/c3.err")"
assert_eq "$(skopeo_raw "$dst_ADDR/mirror/app:stable" | digest_of)" "$want" "copy by digest to a new tag"

# 4. --platform picks one manifest out of an index.
fixturegen push --registry "$src_ADDR" --repo multi --tag v1 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 10K --compact >"$TEST_TMP/multi.json"
arm=$(skopeo_raw "$src_ADDR/multi:v1" | jq -r '.manifests[] | select(.platform.architecture=="arm64") | .digest')
[ -n "$arm" ] || fail "the fixture index has no arm64 child"
"$FERRY" copy --no-cache --platform linux/arm64 "$src_ADDR/multi:v1" "$dst_ADDR/arm/multi:v1" 2>/dev/null
got=$(skopeo_raw "$dst_ADDR/arm/multi:v1" | digest_of)
assert_ne "$got" "$(jq -r .digest "$TEST_TMP/multi.json")" "--platform does not copy the index"
jq -e --arg d "$got" '.children | index($d)' "$TEST_TMP/multi.json" >/dev/null ||
  fail "--platform copied $got, which is not a child of the index"
skopeo_raw "$dst_ADDR/arm/multi:v1" | jq -e '.config.digest' >/dev/null || fail "not an image manifest"
assert_eq "$got" "$arm" "--platform linux/arm64 chose the arm64 child"
if "$FERRY" copy --no-cache --platform linux/s390x "$src_ADDR/multi:v1" "$dst_ADDR/x/multi" 2>"$TEST_TMP/p.err"; then
  fail "copy of a missing platform succeeded"
fi
grep -q 'no manifest for platform linux/s390x' "$TEST_TMP/p.err" || fail "platform error: $(cat "$TEST_TMP/p.err")"
pass "--platform"

# 5. Errors: one line, exit 1, nothing pushed.
set +e
"$FERRY" copy --no-cache "$src_ADDR/team/app:nope" "$dst_ADDR/err/app" 2>"$TEST_TMP/e1.err"
rc=$?
set -e
assert_eq "$rc" 1 "unknown tag exits 1"
assert_eq "$(wc -l <"$TEST_TMP/e1.err")" 1 "one line for an unknown tag"
grep -q 'MANIFEST_UNKNOWN' "$TEST_TMP/e1.err" || fail "unknown tag error: $(cat "$TEST_TMP/e1.err")"
curl -s "http://$dst_ADDR/v2/err/app/tags/list" | grep -q NAME_UNKNOWN || fail "failed copy left a repository"

port=$(free_port)
set +e
timeout 60 "$FERRY" copy --no-cache --retries 2 "127.0.0.1:$port/team/app:v1" "$dst_ADDR/err/app" 2>"$TEST_TMP/e2.err"
rc=$?
set -e
assert_eq "$rc" 1 "unreachable registry exits 1"
grep -q 'registry unreachable' "$TEST_TMP/e2.err" || fail "unreachable error: $(cat "$TEST_TMP/e2.err")"

set +e
"$FERRY" copy "not a ref" "$dst_ADDR/x" 2>"$TEST_TMP/e3.err"
rc=$?
"$FERRY" copy --jobs 0 a b 2>/dev/null
rc2=$?
set -e
assert_eq "$rc" 1 "invalid reference exits 1"
grep -q '^ferry copy: source not a ref' "$TEST_TMP/e3.err" || fail "bad reference error: $(cat "$TEST_TMP/e3.err")"
assert_eq "$rc2" 2 "usage error exits 2"
pass "errors are clear"
