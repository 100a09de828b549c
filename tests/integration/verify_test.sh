#!/usr/bin/env bash
# ferry verify: after a sync the destination is clean (exit 0, nothing
# written); then each kind of drift is made by hand and reported, one line
# each: a tag only at the source (missing), another image under the same tag
# at the destination (differs), a layer deleted at the destination
# (incomplete), a referrer dropped from the destination's sha256-<hex>
# fallback index (referrers). An unreachable registry is named (exit 1); a
# bad config exits 2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst --delete
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 1 --layers 2 --layer-size 20K \
  --compact >"$TEST_TMP/app.json"
fixturegen push --registry "$src_ADDR" --repo multi --tag v2 --seed 2 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 20K --referrers 2 --compact >"$TEST_TMP/multi.json"

write_config() { # FILE DST_URL
  cat >"$1" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "$2" }
rules:
  - name: all
    source: src
    destinations:
      - { registry: dst }
YAML
}
write_config "$TEST_TMP/ferry.yaml" "$dst_URL"

# verify FILE [ARGS...]: run ferry verify (bounded), stdout to out, stderr to err, status to rc.
verify() {
  rc=0
  timeout 120 "$FERRY" verify -c "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err" || rc=$?
}

"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/sync.err" || fail "sync failed: $(cat "$TEST_TMP/sync.err")"

writes_before=$(registry_count_requests dst 'POST|PUT|PATCH|DELETE' '/.*')
verify "$TEST_TMP/ferry.yaml"
assert_eq "$rc" 0 "clean verify exit status ($(cat "$TEST_TMP/err"))"
assert_eq "$(cat "$TEST_TMP/out")" "" "no drift lines"
grep -qx 'verified 2 tags across 1 destinations: 0 drift' "$TEST_TMP/err" ||
  fail "summary line: $(cat "$TEST_TMP/err")"
verify "$TEST_TMP/ferry.yaml" --json
assert_eq "$rc" 0 "clean verify --json exit status"
assert_eq "$(wc -l <"$TEST_TMP/out")" 1 "--json: only the summary"
assert_eq "$(jq -c '[.type, .ok, .tags, .destinations, .drift]' "$TEST_TMP/out")" '["summary",true,2,1,0]' \
  "--json summary"
assert_eq "$(registry_count_requests dst 'POST|PUT|PATCH|DELETE' '/.*')" "$writes_before" "verify wrote nothing"
pass "after a sync verify is clean (exit 0) and sends no write"

# missing: a tag pushed at the source after the sync.
fixturegen push --registry "$src_ADDR" --repo app --tag v9 --seed 3 --layers 1 --layer-size 5K \
  --compact >"$TEST_TMP/app9.json"
verify "$TEST_TMP/ferry.yaml"
assert_eq "$rc" 1 "verify exit status with a missing tag"
assert_eq "$(cat "$TEST_TMP/out")" "drift dst app:v9 missing source $(jq -r .digest "$TEST_TMP/app9.json")" \
  "missing line"
grep -qx 'verified 3 tags across 1 destinations: 1 drift' "$TEST_TMP/err" ||
  fail "summary line: $(cat "$TEST_TMP/err")"
pass "a tag only at the source is missing"

# differs: another image under app:v1 at the destination.
fixturegen push --registry "$dst_ADDR" --repo app --tag v1 --seed 4 --layers 1 --layer-size 5K \
  --compact >"$TEST_TMP/other.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
other=$(jq -r .digest "$TEST_TMP/other.json")
verify "$TEST_TMP/ferry.yaml"
assert_eq "$rc" 1 "verify exit status with a moved tag"
grep -qxF "drift dst app:v1 differs source $want destination $other" "$TEST_TMP/out" ||
  fail "no differs line: $(cat "$TEST_TMP/out")"
pass "a tag pointing elsewhere differs, both digests printed"

# incomplete: a layer of one platform deleted at the destination.
layer=$(jq -r '[.blobs[] | select(.media_type | test("layer"))][0].digest' "$TEST_TMP/multi.json")
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$dst_URL/v2/multi/blobs/$layer")
assert_eq "$code" 202 "layer deleted at the destination"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$dst_URL/v2/multi/blobs/$layer")
assert_eq "$code" 404 "deleted layer is gone"
verify "$TEST_TMP/ferry.yaml"
assert_eq "$rc" 1 "verify exit status with a missing layer"
grep -qE "^drift dst multi:v2 incomplete 1 missing: layer $layer of sha256:[0-9a-f]{64}\$" "$TEST_TMP/out" ||
  fail "no incomplete line: $(cat "$TEST_TMP/out")"
pass "a missing layer makes the tag incomplete"

# referrers: the destination's fallback index loses one of its two entries.
fallback=$(jq -r .referrers_tag "$TEST_TMP/multi.json")
curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "$dst_URL/v2/multi/manifests/$fallback" >"$TEST_TMP/fallback.json" || fail "no fallback index at dst"
assert_eq "$(jq '.manifests | length' "$TEST_TMP/fallback.json")" 2 "fallback lists two referrers"
dropped=$(jq -r '.manifests[1].digest' "$TEST_TMP/fallback.json")
jq -c '.manifests |= .[:1]' "$TEST_TMP/fallback.json" >"$TEST_TMP/fallback1.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
  -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "@$TEST_TMP/fallback1.json" \
  "$dst_URL/v2/multi/manifests/$fallback")
assert_eq "$code" 201 "fallback index replaced"
verify "$TEST_TMP/ferry.yaml"
assert_eq "$rc" 1 "verify exit status with a dropped referrer"
grep -qxF "drift dst multi:v2 referrers 1 of 2 referrers not listed: $dropped" "$TEST_TMP/out" ||
  fail "no referrers line: $(cat "$TEST_TMP/out")"
pass "a referrer not listed at the destination is reported"

# Every drift so far, one line each, sorted; the fallback tags themselves are never compared.
assert_eq "$(awk '{print $3, $4}' "$TEST_TMP/out" | tr '\n' ' ')" \
  "app:v1 differs app:v9 missing multi:v2 incomplete multi:v2 referrers " "all four drifts, sorted"
grep -qx 'verified 3 tags across 1 destinations: 4 drift' "$TEST_TMP/err" ||
  fail "summary line: $(cat "$TEST_TMP/err")"
verify "$TEST_TMP/ferry.yaml" --json -v
assert_eq "$rc" 1 "verify --json exit status with drift"
assert_eq "$(jq -sc '[.[] | select(.type == "drift") | .kind]' "$TEST_TMP/out")" \
  '["differs","missing","incomplete","referrers"]' "--json drift objects"
assert_eq "$(jq -sc '.[-1] | [.type, .ok, .tags, .drift]' "$TEST_TMP/out")" '["summary",false,3,4]' \
  "--json summary with drift"
assert_eq "$(jq -r 'select(.kind == "differs") | .destination_digest' "$TEST_TMP/out")" "$other" \
  "--json differs carries the destination digest"
assert_eq "$(jq -r 'select(.kind == "incomplete") | .missing | join(" ")' "$TEST_TMP/out")" "$layer" \
  "--json incomplete lists the missing blob"
assert_eq "$(jq -r 'select(.kind == "referrers") | .missing | join(" ")' "$TEST_TMP/out")" "$dropped" \
  "--json referrers lists the unlisted referrer"
pass "--json: one object per drift and a summary"

# An unreachable destination is named; exit 1, no summary.
write_config "$TEST_TMP/down.yaml" "http://127.0.0.1:$(free_port)"
verify "$TEST_TMP/down.yaml"
assert_eq "$rc" 1 "verify exit status with a registry down"
assert_eq "$(wc -l <"$TEST_TMP/err")" 1 "one error line: $(cat "$TEST_TMP/err")"
grep -q "^ferry verify: registry 'dst' (127.0.0.1:[0-9]*) is unreachable: " "$TEST_TMP/err" ||
  fail "error does not name the registry: $(cat "$TEST_TMP/err")"
assert_eq "$(cat "$TEST_TMP/out")" "" "no drift printed when a registry is down"
pass "an unreachable registry is named, exit 1"

# Config and usage errors exit 2.
printf 'registries: {}\nrules: []\nbogus: 1\n' >"$TEST_TMP/bad.yaml"
verify "$TEST_TMP/bad.yaml"
assert_eq "$rc" 2 "exit status for a bad config"
grep -q 'bogus' "$TEST_TMP/err" || fail "config error does not name the key: $(cat "$TEST_TMP/err")"
verify "$TEST_TMP/nonexistent.yaml"
assert_eq "$rc" 2 "exit status for a missing config"
rc=0
"$FERRY" verify >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit status without -c"
pass "config and usage errors exit 2"
