#!/usr/bin/env bash
# Poller and backfill: images that exist before `ferry serve` starts are found
# at start; a new tag is found on the next tick; nothing is appended while
# nothing changes; rules filter repositories and tags; a deleted tag becomes a
# delete entry where the rule propagates deletes; a tag that comes back to an
# earlier digest (A, B, A) is found; the same image under the same name on a
# second source is its own entry.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --delete
registry_start src2
fixturegen push --registry "$src_ADDR" --repo app/web --tag v1 --seed 1 --layers 1 --layer-size 4K --compact >"$TEST_TMP/w1.json"
fixturegen push --registry "$src_ADDR" --repo app/web --tag v2 --seed 2 --layers 1 --layer-size 4K --compact >/dev/null
fixturegen push --registry "$src_ADDR" --repo app/scratch/tmp --tag v1 --seed 3 --layers 1 --layer-size 4K --compact >/dev/null
fixturegen push --registry "$src_ADDR" --repo other --tag v1 --seed 4 --layers 1 --layer-size 4K --compact >/dev/null
fixturegen push --registry "$src_ADDR" --repo app/web --tag dev-1 --seed 5 --layers 1 --layer-size 4K --compact >/dev/null

port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  src: { url: "http://$src_ADDR" }
  src2: { url: "http://$src2_ADDR" }
  dst: { url: "http://127.0.0.1:2" }
rules:
  - name: web
    source: src
    repositories: ["app/**", "!app/scratch/**"]
    tags: ["*", "!dev-*"]
    deletes: true
    destinations: [{ registry: dst }]
  - { name: web2, source: src2, repositories: ["app/**"], destinations: [{ registry: dst }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
J() { "$FERRY" journal -c "$TEST_TMP/ferry.yaml" "$@"; }

wait_until 15 bash -c "[ \$($FERRY journal -c $TEST_TMP/ferry.yaml ls --json | wc -l) -ge 2 ]" || fail "backfill found nothing"
sleep 2.5 # two more rounds: nothing may be added
J ls --json >"$TEST_TMP/ls1.json"
assert_eq "$(jq -r '"\(.repository):\(.tag)"' "$TEST_TMP/ls1.json" | sort | tr '\n' ' ')" "app/web:v1 app/web:v2 " \
  "backfill: selected repositories and tags only, each once"
assert_eq "$(jq -r 'select(.tag=="v1") | .digest' "$TEST_TMP/ls1.json")" "$(jq -r .digest "$TEST_TMP/w1.json")" "digest"
jq -se 'map(select(.tag=="v1"))[0].event_id | startswith("poll:app/web:v1:sha256:")' "$TEST_TMP/ls1.json" >/dev/null ||
  fail "poll event id"
pass "backfill at start, nothing appended while nothing changes"

# A new tag and a moved tag are found on the next tick.
fixturegen push --registry "$src_ADDR" --repo app/web --tag v3 --seed 6 --layers 1 --layer-size 4K --compact >/dev/null
fixturegen push --registry "$src_ADDR" --repo app/web --tag v1 --seed 7 --layers 1 --layer-size 4K --compact >"$TEST_TMP/w1b.json"
wait_until 10 bash -c "[ \$($FERRY journal -c $TEST_TMP/ferry.yaml ls --json | wc -l) -ge 4 ]" || fail "new tags not found"
sleep 2.5
J ls --json --after 2 >"$TEST_TMP/ls2.json"
assert_eq "$(jq -r '.tag' "$TEST_TMP/ls2.json" | sort | tr '\n' ' ')" "v1 v3 " "new tag and moved tag"
assert_eq "$(jq -r 'select(.tag=="v1") | .digest' "$TEST_TMP/ls2.json")" "$(jq -r .digest "$TEST_TMP/w1b.json")" "moved digest"
pass "a new tag and a moved tag are found on the next tick"

# Back to the first digest (A, B, A): a new entry, not dropped as a repeat of the first.
fixturegen push --registry "$src_ADDR" --repo app/web --tag v1 --seed 1 --layers 1 --layer-size 4K --compact >/dev/null
back_to_a() {
  J ls --json --after 4 | jq -se --arg d "$(jq -r .digest "$TEST_TMP/w1.json")" \
    'any(.tag == "v1" and .digest == $d and .source == "src")' >/dev/null
}
wait_until 10 back_to_a || fail "v1 moved back to its first digest: no entry ($(J ls --json --after 4 | jq -c '[.tag, .digest]'))"
pass "a tag back at an earlier digest is a new entry"

# The same name and digest on a second source: an entry of that source.
fixturegen push --registry "$src2_ADDR" --repo app/web --tag v1 --seed 1 --layers 1 --layer-size 4K --compact >/dev/null
from_src2() {
  J ls --json | jq -se --arg d "$(jq -r .digest "$TEST_TMP/w1.json")" \
    'any(.tag == "v1" and .digest == $d and .source == "src2")' >/dev/null
}
wait_until 10 from_src2 || fail "the same image on src2 was not journaled"
pass "the same image on a second source is journaled for that source"

# A deleted tag becomes a delete entry (deletes: true).
d3=$(curl -s -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$src_URL/v2/app/web/manifests/v3" |
  tr -d '\r' | awk 'tolower($1)=="docker-content-digest:" {print $2}')
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/app/web/manifests/$d3")
assert_eq "$code" 202 "manifest deleted at the source"
wait_until 10 bash -c "$FERRY journal -c $TEST_TMP/ferry.yaml ls --json | jq -se 'any(.action==\"delete\")' >/dev/null" ||
  fail "tag deletion not journaled"
J ls --json | jq -se 'map(select(.action=="delete")) | length == 1 and .[0].tag == "v3"' >/dev/null ||
  fail "delete entry names v3"
pass "a deleted tag becomes a delete entry"

# State survives a restart: nothing is appended again.
count=$(J ls --json | wc -l)
kill -TERM "$ferry_PID"
wait "$ferry_PID" || true
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
sleep 2.5
assert_eq "$(J ls --json | wc -l)" "$count" "no re-append after a restart"
pass "poller state survives a restart"
