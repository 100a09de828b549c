#!/usr/bin/env bash
# A multi-arch index with referrers: every child, every blob and every
# referrer arrives by digest, and the sha256-<hex> fallback tag at the
# destination (Distribution 2.8 has no referrers API) lists the referrers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v2 --platforms linux/amd64,linux/arm64,linux/arm/v7 \
  --layers 2 --layer-size 64K --referrers 2 --artifact-type application/vnd.example.sig,application/spdx+json \
  --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
fallback=$(jq -r .referrers_tag "$TEST_TMP/app.json")

"$FERRY" copy --json --no-cache "$src_ADDR/app:v2" "$dst_ADDR/dr/app" >"$TEST_TMP/c.json"
assert_eq "$(jq -r .ok "$TEST_TMP/c.json")" true "copy ok"
assert_eq "$(jq -r .referrers "$TEST_TMP/c.json")" 2 "two referrers found"
assert_eq "$(skopeo_raw "$dst_ADDR/dr/app:v2" | digest_of)" "$want" "index digest"
for d in $(jq -r '.children[]' "$TEST_TMP/app.json") $(jq -r '.referrers[]' "$TEST_TMP/app.json"); do
  assert_eq "$(skopeo_raw "$dst_ADDR/dr/app@$d" | digest_of)" "$d" "manifest $d"
done
for d in $(jq -r '.blobs[].digest' "$TEST_TMP/app.json"); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://$dst_ADDR/v2/dr/app/blobs/$d")
  assert_eq "$code" 200 "blob $d present"
done
listed=$(skopeo_raw "$dst_ADDR/dr/app:$fallback" | jq -r '.manifests[].digest' | sort)
assert_eq "$listed" "$(jq -r '.referrers[]' "$TEST_TMP/app.json" | sort)" "fallback tag lists the referrers"
skopeo_raw "$dst_ADDR/dr/app:$fallback" | jq -e '[.manifests[].artifactType] | index("application/spdx+json")' >/dev/null ||
  fail "fallback index lost artifactType"
pass "index, children, blobs and referrers copied"

# The tag moved last: its PUT is the final manifest PUT in the access log.
last=$(registry_access_log dst | awk '$1=="PUT" && $2 ~ /manifests/ {u=$2} END {print u}')
assert_eq "$last" "/v2/dr/app/manifests/v2" "the tag is pushed last"

# A referrer added later at the source is merged into the fallback index.
fixturegen push --registry "$src_ADDR" --repo app --tag v2 --platforms linux/amd64,linux/arm64,linux/arm/v7 \
  --layers 2 --layer-size 64K --referrers 3 --artifact-type application/vnd.example.sig,application/spdx+json,application/vnd.example.sbom \
  --compact >"$TEST_TMP/app3.json"
"$FERRY" copy --json --no-cache "$src_ADDR/app:v2" "$dst_ADDR/dr/app" >"$TEST_TMP/c2.json"
assert_eq "$(skopeo_raw "$dst_ADDR/dr/app:$fallback" | jq '.manifests | length')" 3 "third referrer merged"
pass "new referrers merged into the fallback index"

# --no-referrers leaves them out.
"$FERRY" copy --json --no-cache --no-referrers "$src_ADDR/app:v2" "$dst_ADDR/plain/app" >"$TEST_TMP/c3.json"
assert_eq "$(jq -r .referrers "$TEST_TMP/c3.json")" 0 "no referrers looked up"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "http://$dst_ADDR/v2/plain/app/manifests/$fallback")
assert_eq "$code" 404 "--no-referrers pushed no fallback tag"
pass "--no-referrers"
