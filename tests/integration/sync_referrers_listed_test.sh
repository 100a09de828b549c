#!/usr/bin/env bash
# A source without a referrers API (Distribution 2.8) keeps an image's
# referrers under its sha256-<hex> tag, and ferry sync's own poll has just
# listed every tag: an image whose listing named no such tag has no
# referrers, so its job does not GET the tag (one 404 per image spared, a
# new node's no-op among them). Only the first job asks (the probe that
# learns the source has no API); an image whose tag the listing named gets
# its referrers copied. The destination takes one job at a time
# (max_concurrency: 1), so the probe answers before the next job starts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

IMAGES=6
registry_start src
registry_start dst
for ((i = 1; i <= IMAGES; i++)); do
  fixturegen push --registry "$src_ADDR" --repo "plain/i$i" --tag v1 --seed "plain-$i" --layers 1 \
    --layer-size 2K --compact >/dev/null
done
fixturegen push --registry "$src_ADDR" --repo signed --tag v1 --seed signed --layers 1 --layer-size 2K \
  --referrers 2 --compact >"$TEST_TMP/signed.json"
fallback=$(jq -r .referrers_tag "$TEST_TMP/signed.json")
[[ "$fallback" == sha256-* ]] || fail "fixturegen gave no referrers tag: $fallback"

cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR", max_concurrency: 1 }
rules:
  - { name: all, source: src, repositories: ["**"], destinations: [{ registry: dst }] }
YAML

"$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync.out" 2>"$TEST_TMP/sync.err" ||
  fail "sync failed: $(tail -3 "$TEST_TMP/sync.err")"
sleep 0.3 # the access-log line is written as the handler returns

probes=$(registry_count_requests src GET '/v2/.*/referrers/sha256:[0-9a-f]{64}')
plain_gets=$(registry_count_requests src GET '/v2/plain/i[0-9]+/manifests/sha256-[0-9a-f]{64}')
note "referrers API probes $probes; sha256-<hex> GETs for the $IMAGES images without one: $plain_gets"
((probes >= 1)) || fail "no job asked the source's referrers API (the probe): the check below would say nothing"
((plain_gets <= 1)) || fail "$plain_gets GETs of sha256-<hex> tags no listing named (want at most the probe's 1)"
pass "images without referrers: $plain_gets GET of their sha256-<hex> tag for $IMAGES images"

assert_eq "$(registry_count_requests src GET "/v2/signed/manifests/$fallback" 200)" 1 "GETs of signed's referrers tag"
curl -sf --max-time 10 -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "$dst_URL/v2/signed/manifests/$fallback" >"$TEST_TMP/dst_referrers.json" ||
  fail "no referrers tag $fallback at the destination"
assert_eq "$(jq '.manifests | length' "$TEST_TMP/dst_referrers.json")" 2 "referrers of signed at the destination"
pass "the image whose listing named its referrers tag has both referrers at the destination"
