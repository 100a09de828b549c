#!/usr/bin/env bash
# labels: heavy
# A 1 GiB layer copies with peak RSS under 32 MiB: no blob is ever held whole
# in memory, the download feeds the upload through a bounded ring.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo big --tag v1 --layers 1 --layer-size 1G --compact >"$TEST_TMP/big.json"
want=$(jq -r .digest "$TEST_TMP/big.json")
layer=$(jq -r '[.blobs[] | select(.size > 1000000000)][0].digest' "$TEST_TMP/big.json")

/usr/bin/time -f '%M %e' -o "$TEST_TMP/time" "$FERRY" copy --no-cache "$src_ADDR/big:v1" "$dst_ADDR/big:v1" 2>"$TEST_TMP/out"
read -r rss_kb wall <"$TEST_TMP/time"
note "1 GiB copy: peak RSS ${rss_kb} KiB, wall ${wall} s"
[ "$rss_kb" -lt $((32 * 1024)) ] || fail "peak RSS ${rss_kb} KiB is not under 32 MiB"
assert_eq "$(skopeo_raw "$dst_ADDR/big:v1" | digest_of)" "$want" "digest"
size=$(curl -s -I "$dst_URL/v2/big/blobs/$layer" | tr -d '\r' | awk 'tolower($1)=="content-length:" {print $2}')
assert_eq "$size" "$(jq -r '[.blobs[] | select(.size > 1000000000)][0].size' "$TEST_TMP/big.json")" "layer size at destination"
pass "1 GiB layer in ${rss_kb} KiB peak RSS"
