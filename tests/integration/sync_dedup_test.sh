#!/usr/bin/env bash
# Dedup inside one destination: three repositories x three tags share their
# base layers, and the tags of one repository replicate at the same time into
# a repository that does not exist yet. Every blob is uploaded once (the rest
# are mounted or known there), no link is written twice at once (Distribution
# 2.8 writes a link non-atomically), no manifest PUT is refused, and no job
# needs a retry. Then the presence cache spares the HEADs of blobs it knows,
# and corrects itself when the registry lost them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start d1
for r in 1 2 3; do
  for t in 1 2 3; do
    fixturegen push --registry "$src_ADDR" --repo "app$r" --tag "v$t" --seed "$((r * 10 + t))" --layers 1 \
      --layer-size 64K --base-seed 7 --base-layers 2 --base-layer-size 1M --compact >"$TEST_TMP/app$r-v$t.json"
  done
done
unique=$(jq -s '[.[].blobs[].digest] | unique | length' "$TEST_TMP"/app*.json)
config() { # FILE
  cat >"$1" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR", max_concurrency: 6 }
rules:
  - { name: apps, source: src, repositories: ["app*"], destinations: [{ registry: d1 }] }
YAML
}
config "$TEST_TMP/one.yaml"
"$FERRY" sync -c "$TEST_TMP/one.yaml" 2>"$TEST_TMP/sync1.err" || fail "sync failed: $(tail -5 "$TEST_TMP/sync1.err")"
assert_eq "$(grep -c '^complete ' "$TEST_TMP/sync1.err")" 9 "9 images complete"
if grep -q 'retrying' "$TEST_TMP/sync1.err"; then
  fail "a job needed a retry: $(grep retrying "$TEST_TMP/sync1.err" | head -1)"
fi
uploads=$(registry_count_requests d1 PUT '/v2/.*/blobs/uploads/.*digest=.*' 201)
assert_eq "$uploads" "$unique" "each of the $unique unique blobs uploaded once"
dups=$(grep -oE '"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256(:|%3A)[0-9a-f]{64}' "$d1_LOG" |
  grep -oE '[0-9a-f]{64}$' | sort | uniq -d | wc -l)
assert_eq "$dups" 0 "no blob uploaded twice"
double_links=$(grep -oE '"POST /v2/[^ ]*/blobs/uploads/\?mount=[^& ]*' "$d1_LOG" | sort | uniq -d | wc -l)
assert_eq "$double_links" 0 "no blob mounted twice into one repository"
assert_eq "$(registry_count_requests d1 PUT '/v2/.*/manifests/.*' '4[0-9][0-9]')" 0 "no manifest PUT refused"
for r in 1 2 3; do
  for t in 1 2 3; do
    assert_eq "$(skopeo_raw "$d1_ADDR/app$r:v$t" | digest_of)" "$(jq -r .digest "$TEST_TMP/app$r-v$t.json")" "app$r:v$t"
  done
done
pass "tags of one new repository replicate together: every blob uploaded once, no link raced"

# New tags in the same repositories: the presence cache knows the base
# layers are there, so only the new blobs (a layer and a config per image)
# are HEADed and uploaded.
heads_before=$(registry_count_requests d1 HEAD '/v2/.*/blobs/.*')
uploads_before=$(registry_count_requests d1 PUT '/v2/.*/blobs/uploads/.*digest=.*' 201)
for r in 1 2 3; do
  fixturegen push --registry "$src_ADDR" --repo "app$r" --tag v4 --seed "$((r * 10 + 4))" --layers 1 \
    --layer-size 64K --base-seed 7 --base-layers 2 --base-layer-size 1M --compact >"$TEST_TMP/app$r-v4.json"
done
"$FERRY" sync -c "$TEST_TMP/one.yaml" 2>"$TEST_TMP/sync2.err" || fail "second sync failed: $(tail -5 "$TEST_TMP/sync2.err")"
assert_eq "$(grep -c '^complete ' "$TEST_TMP/sync2.err")" 3 "3 new images complete"
assert_eq "$(($(registry_count_requests d1 HEAD '/v2/.*/blobs/.*') - heads_before))" 6 "HEADs only for the 6 new blobs"
assert_eq "$(($(registry_count_requests d1 PUT '/v2/.*/blobs/uploads/.*digest=.*' 201) - uploads_before))" 6 "6 new blobs uploaded"
for r in 1 2 3; do
  assert_eq "$(skopeo_raw "$d1_ADDR/app$r:v4" | digest_of)" "$(jq -r .digest "$TEST_TMP/app$r-v4.json")" "app$r:v4"
done
pass "the presence cache spares the HEADs of blobs it knows"

# A stale entry: app1's links are gone (removed behind Ferry's back); the
# cache still says app1 holds the base layers, so the manifest PUT is refused
# with BLOB_UNKNOWN; the cache is corrected and the retry mounts them.
registry_stop d1
rm -rf "$d1_STORAGE"/docker/registry/v2/repositories/app1/_layers
registry_restart d1
fixturegen push --registry "$src_ADDR" --repo app1 --tag v5 --seed 15 --layers 1 --layer-size 64K \
  --base-seed 7 --base-layers 2 --base-layer-size 1M --compact >"$TEST_TMP/app1-v5.json"
"$FERRY" sync -c "$TEST_TMP/one.yaml" 2>"$TEST_TMP/sync3.err" || fail "sync after a stale cache failed: $(tail -5 "$TEST_TMP/sync3.err")"
grep -q 'retrying.*BLOB_UNKNOWN' "$TEST_TMP/sync3.err" ||
  fail "the stale entry did not lead to a BLOB_UNKNOWN retry: $(head -3 "$TEST_TMP/sync3.err")"
assert_eq "$(skopeo_raw "$d1_ADDR/app1:v5" | digest_of)" "$(jq -r .digest "$TEST_TMP/app1-v5.json")" "app1:v5 after the cache was corrected"
assert_eq "$(grep -c '^complete ' "$TEST_TMP/sync3.err")" 1 "the job completed"
pass "a stale presence entry is corrected and the image still lands"

# A backfill bigger than the engine's window of entries held in memory: the
# journal is read as the work goes, and everything still lands.
registry_start d2
cat >"$TEST_TMP/window.yaml" <<YAML
data_dir: $TEST_TMP/window-data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
engine_window: 3
registries:
  src: { url: "http://$src_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: apps, source: src, repositories: ["app*"], destinations: [{ registry: d2 }] }
YAML
"$FERRY" sync -c "$TEST_TMP/window.yaml" 2>"$TEST_TMP/window.err" ||
  fail "windowed sync failed: $(tail -5 "$TEST_TMP/window.err")"
tags=$(find "$TEST_TMP" -maxdepth 1 -name 'app*-v*.json' | wc -l)
assert_eq "$(grep -c '^complete ' "$TEST_TMP/window.err")" "$tags" "every image complete through a window of 3 entries"
for f in "$TEST_TMP"/app*-v*.json; do
  n=$(basename "$f" .json)
  assert_eq "$(skopeo_raw "$d2_ADDR/${n%-*}:${n##*-}" | digest_of)" "$(jq -r .digest "$f")" "d2 ${n%-*}:${n##*-}"
done
pass "a backfill larger than the engine's window lands whole"
