#!/usr/bin/env bash
# ferry verify judges each tag by what the engine writes under its rule:
# 1. `platforms: [linux/amd64]`: `ferry sync` puts that platform's own
#    manifest under the tag (not the index); verify is clean (exit 0) and
#    still finds real drift: a layer of that manifest deleted (incomplete),
#    the whole index under the tag (differs), a tag only at the source
#    (missing), each naming the platform's manifest and the index it was
#    picked from; a tag whose source index lacks the platform is missing
#    (exit 1), as sync (FAILED, exit 1) says too.
# 2. `overwrite: false`: a destination tag that held another image before the
#    sync is left alone by the engine and reported as kept (text and --json),
#    exit 0; a tag missing there is still drift (exit 1), and so is a kept-
#    digest tag whose layer is gone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst --delete

# run COMMAND FILE [ARGS...]: `ferry COMMAND -c FILE ARGS` (bounded), stdout to
# out, stderr to err, status to rc.
run() {
  local cmd=$1
  shift
  rc=0
  timeout 60 "$FERRY" "$cmd" -c "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err" || rc=$?
}
verify() { run verify "$@"; }
# sync FILE: a sync that must succeed.
sync() {
  run sync "$1"
  ((rc == 0)) || fail "sync failed: $(tail -n 3 "$TEST_TMP/err")"
}

# ---- 1. one platform ----
fixturegen push --registry "$src_ADDR" --repo plat --tag v1 --seed 11 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 8K --referrers 1 --compact >"$TEST_TMP/plat.json"
fixturegen push --registry "$src_ADDR" --repo plat --tag solo --seed 12 --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/solo.json"
index=$(jq -r .digest "$TEST_TMP/plat.json")
cat >"$TEST_TMP/plat.yaml" <<YAML
data_dir: $TEST_TMP/data-plat
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "$dst_URL" }
rules:
  - name: amd64
    source: src
    repositories: ["plat"]
    platforms: [linux/amd64]
    destinations:
      - { registry: dst }
YAML
sync "$TEST_TMP/plat.yaml"
# What the engine wrote: the amd64 manifest of the index, whatever the index lists.
amd64=$(curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' "$src_URL/v2/plat/manifests/$index" |
  jq -r '.manifests[] | select(.platform.os == "linux" and .platform.architecture == "amd64") | .digest')
[[ "$amd64" == sha256:* ]] || fail "no amd64 manifest in the source index"
assert_eq "$(skopeo_raw "$dst_ADDR/plat:v1" | digest_of)" "$amd64" "the sync put the amd64 manifest under plat:v1"
verify "$TEST_TMP/plat.yaml"
assert_eq "$rc" 0 "verify of a one-platform mirror ($(cat "$TEST_TMP/out") $(cat "$TEST_TMP/err"))"
assert_eq "$(cat "$TEST_TMP/out")" "" "no drift for a one-platform mirror"
grep -qx 'verified 2 tags across 1 destinations: 0 drift' "$TEST_TMP/err" ||
  fail "summary line: $(cat "$TEST_TMP/err")"
pass "a correct one-platform mirror verifies clean (exit 0)"

# Real drift under the same rule: a layer of the amd64 manifest deleted.
layer=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$src_URL/v2/plat/manifests/$amd64" |
  jq -r '.layers[0].digest')
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$dst_URL/v2/plat/blobs/$layer")
assert_eq "$code" 202 "amd64 layer deleted at the destination"
verify "$TEST_TMP/plat.yaml"
assert_eq "$rc" 1 "verify exit status with the platform's layer gone"
assert_eq "$(cat "$TEST_TMP/out")" "drift dst plat:v1 incomplete 1 missing: layer $layer of $amd64" \
  "incomplete line for the platform's manifest"
pass "a one-platform mirror missing a layer is incomplete"

# A tag only at the source: missing, naming the platform's manifest and its index.
fixturegen push --registry "$src_ADDR" --repo plat --tag v2 --seed 13 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 8K --compact >"$TEST_TMP/plat2.json"
index2=$(jq -r .digest "$TEST_TMP/plat2.json")
amd64_2=$(curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' "$src_URL/v2/plat/manifests/$index2" |
  jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest')
# The whole index under plat:v1 at the destination (what a rule without platforms writes).
fixturegen push --registry "$dst_ADDR" --repo plat --tag v1 --seed 11 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 8K --compact >/dev/null
verify "$TEST_TMP/plat.yaml" --json
assert_eq "$rc" 1 "verify exit status with platform drift"
assert_eq "$(jq -sc '[.[] | select(.type == "drift") | [.tag, .kind, .digest, .platform, .source_index,
  (.destination_digest // null)]]' "$TEST_TMP/out")" \
  "[[\"v1\",\"differs\",\"$amd64\",\"linux/amd64\",\"$index\",\"$index\"],[\"v2\",\"missing\",\"$amd64_2\",\"linux/amd64\",\"$index2\",null]]" \
  "--json drift under a platforms rule"
verify "$TEST_TMP/plat.yaml"
grep -qxF "drift dst plat:v1 differs source $amd64 (linux/amd64 of $index) destination $index" "$TEST_TMP/out" ||
  fail "no differs line: $(cat "$TEST_TMP/out")"
grep -qxF "drift dst plat:v2 missing source $amd64_2 (linux/amd64 of $index2)" "$TEST_TMP/out" ||
  fail "no missing line: $(cat "$TEST_TMP/out")"
pass "a one-platform mirror holding the whole index differs, a tag only at the source is missing"

# A source index without the rule's platform: the engine cannot copy it, and
# verify, sync and status agree that the destination lacks it.
fixturegen push --registry "$src_ADDR" --repo plat --tag armonly --seed 14 --platforms linux/arm64,linux/arm/v7 \
  --layers 1 --layer-size 8K --compact >"$TEST_TMP/plat3.json"
index3=$(jq -r .digest "$TEST_TMP/plat3.json")
verify "$TEST_TMP/plat.yaml"
assert_eq "$rc" 1 "verify exit status with a source index that lacks the rule's platform"
grep -qxF "drift dst plat:armonly missing source $index3 has no manifest for linux/amd64" "$TEST_TMP/out" ||
  fail "no missing line for plat:armonly: $(cat "$TEST_TMP/out") $(cat "$TEST_TMP/err")"
verify "$TEST_TMP/plat.yaml" --json
assert_eq "$(jq -sc '[.[] | select(.tag == "armonly") | [.type, .kind, .digest, .platform, .source_index]]' "$TEST_TMP/out")" \
  "[[\"drift\",\"missing\",\"$index3\",\"linux/amd64\",\"$index3\"]]" "--json drift for plat:armonly"
run sync "$TEST_TMP/plat.yaml"
assert_eq "$rc" 1 "sync exit status with plat:armonly unavailable at the source"
grep -q "^FAILED .* dst plat@$index3 tag armonly" "$TEST_TMP/out" ||
  fail "sync does not name plat:armonly FAILED: $(cat "$TEST_TMP/out")"
pass "a source index without the rule's platform: verify says missing (exit 1), sync says FAILED (exit 1)"

# ---- 2. overwrite: false ----
fixturegen push --registry "$src_ADDR" --repo keep --tag t --seed 21 --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/keep-src.json"
fixturegen push --registry "$src_ADDR" --repo keep --tag u --seed 22 --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/keep-u.json"
fixturegen push --registry "$dst_ADDR" --repo keep --tag t --seed 23 --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/keep-dst.json"
src_t=$(jq -r .digest "$TEST_TMP/keep-src.json")
dst_t=$(jq -r .digest "$TEST_TMP/keep-dst.json")
write_keep() { # FILE TAG_GLOB
  cat >"$1" <<YAML
data_dir: $TEST_TMP/data-keep
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "$dst_URL" }
rules:
  - name: keep
    source: src
    repositories: ["keep"]
    tags: ["$2"]
    overwrite: false
    destinations:
      - { registry: dst }
YAML
}
write_keep "$TEST_TMP/keep.yaml" '*'
sync "$TEST_TMP/keep.yaml"
assert_eq "$(skopeo_raw "$dst_ADDR/keep:t" | digest_of)" "$dst_t" "overwrite: false left keep:t alone"
verify "$TEST_TMP/keep.yaml"
assert_eq "$rc" 0 "verify exit status with a kept tag ($(cat "$TEST_TMP/out") $(cat "$TEST_TMP/err"))"
assert_eq "$(cat "$TEST_TMP/out")" "kept dst keep:t source $src_t destination $dst_t (overwrite: false)" \
  "kept line"
grep -qx 'verified 2 tags across 1 destinations: 0 drift, 1 kept (overwrite: false)' "$TEST_TMP/err" ||
  fail "summary line: $(cat "$TEST_TMP/err")"
verify "$TEST_TMP/keep.yaml" --json
assert_eq "$rc" 0 "verify --json exit status with a kept tag"
assert_eq "$(jq -sc '[.[] | select(.type == "kept") | [.tag, .kind, .digest, .destination_digest, .reason]]' \
  "$TEST_TMP/out")" "[[\"t\",\"kept\",\"$src_t\",\"$dst_t\",\"overwrite: false\"]]" "--json kept object"
assert_eq "$(jq -sc '.[-1] | [.type, .ok, .tags, .drift, .kept]' "$TEST_TMP/out")" '["summary",true,2,0,1]' \
  "--json summary with a kept tag"
pass "a tag left alone by overwrite: false is reported kept, not drift (exit 0)"

# A tag missing at the destination is drift, overwrite: false or not.
fixturegen push --registry "$src_ADDR" --repo keep --tag w --seed 24 --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/keep-w.json"
verify "$TEST_TMP/keep.yaml"
assert_eq "$rc" 1 "verify exit status with a tag missing under overwrite: false"
grep -qxF "drift dst keep:w missing source $(jq -r .digest "$TEST_TMP/keep-w.json")" "$TEST_TMP/out" ||
  fail "no missing line: $(cat "$TEST_TMP/out")"
grep -qxF "kept dst keep:t source $src_t destination $dst_t (overwrite: false)" "$TEST_TMP/out" ||
  fail "no kept line beside the drift: $(cat "$TEST_TMP/out")"
pass "under overwrite: false a missing tag is still drift (exit 1)"

# The tag the engine did copy (keep:u) is checked whole: its layer gone is drift.
write_keep "$TEST_TMP/keep-u.yaml" 'u'
ulayer=$(jq -r '[.blobs[] | select(.media_type | test("layer"))][0].digest' "$TEST_TMP/keep-u.json")
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$dst_URL/v2/keep/blobs/$ulayer")
assert_eq "$code" 202 "keep:u layer deleted at the destination"
verify "$TEST_TMP/keep-u.yaml"
assert_eq "$rc" 1 "verify exit status with a layer gone under overwrite: false"
grep -qE "^drift dst keep:u incomplete 1 missing: layer $ulayer of sha256:[0-9a-f]{64}\$" "$TEST_TMP/out" ||
  fail "no incomplete line: $(cat "$TEST_TMP/out")"
pass "under overwrite: false an incomplete copy is still drift"
