#!/usr/bin/env bash
# Deletes: with `deletes: true` a tag deleted at the source is deleted at the
# destination (through the tag's fence); with deletes off it stays; a tag that
# a newer push moved is not deleted.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --delete
registry_start d1 --delete
registry_start d2 --delete
fixturegen push --registry "$src_ADDR" --repo app --tag gone --seed 1 --layers 1 --layer-size 8K --compact >"$TEST_TMP/gone.json"
fixturegen push --registry "$src_ADDR" --repo app --tag stays --seed 2 --layers 1 --layer-size 8K --compact >"$TEST_TMP/stays.json"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: mirror, source: src, deletes: true, destinations: [{ registry: d1 }] }
  - { name: archive, source: src, deletes: false, destinations: [{ registry: d2 }] }
YAML
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s1.err" || fail "first sync: $(cat "$TEST_TMP/s1.err")"
gone=$(jq -r .digest "$TEST_TMP/gone.json")
assert_eq "$(skopeo_raw "$d1_ADDR/app:gone" | digest_of)" "$gone" "replicated to d1"
assert_eq "$(skopeo_raw "$d2_ADDR/app:gone" | digest_of)" "$gone" "replicated to d2"

code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/app/manifests/$gone")
assert_eq "$code" 202 "deleted at the source"
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s2.err" || fail "second sync: $(cat "$TEST_TMP/s2.err")"
"$FERRY" journal -c "$TEST_TMP/ferry.yaml" ls --json | jq -se 'map(select(.action=="delete" and .tag=="gone")) | length == 1' >/dev/null ||
  fail "the poller did not journal the delete"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$d1_URL/v2/app/manifests/gone")
assert_eq "$code" 404 "deletes: true removed the tag at d1"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$d2_URL/v2/app/manifests/gone")
assert_eq "$code" 200 "deletes: false kept the tag at d2"
assert_eq "$(skopeo_raw "$d1_ADDR/app:stays" | digest_of)" "$(jq -r .digest "$TEST_TMP/stays.json")" "other tags untouched"
pass "deletes propagate where the rule says so, and only there"

# A delete racing a newer push of the same tag: the tag ends at the newer
# image whichever job takes the tag's fence first.
fixturegen push --registry "$src_ADDR" --repo app --tag stays --seed 3 --layers 1 --layer-size 8K --compact >"$TEST_TMP/stays2.json"
"$FERRY" journal -c "$TEST_TMP/ferry.yaml" append --source src --repo app --digest "$(jq -r .digest "$TEST_TMP/stays.json")" \
  --tag stays --delete >/dev/null
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s3.err" || fail "third sync: $(cat "$TEST_TMP/s3.err")"
assert_eq "$(skopeo_raw "$d1_ADDR/app:stays" | digest_of)" "$(jq -r .digest "$TEST_TMP/stays2.json")" \
  "the moved tag was not deleted"
pass "a delete racing a newer push of the same tag ends with the newer image"
