#!/usr/bin/env bash
# An aborted push and an emptied repository are empty repositories, not
# errors: a repository that holds a blob but no manifest (blobs uploaded, the
# manifest never pushed: Distribution lists it in _catalog and answers its
# tags/list with 404 NAME_UNKNOWN) and one whose only manifest was deleted
# (an empty tag list) make neither `ferry sync` fail nor print "FAILED
# polling", and the other repositories replicate; `ferry serve`'s poller
# reports no error for them either (log, /v1/status).
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --delete
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 1 --layers 1 --layer-size 8K \
  --compact >"$TEST_TMP/app.json"

# aborted: one blob uploaded (POST, then PUT ?digest=), no manifest.
head -c 5000 /dev/urandom >"$TEST_TMP/blob"
blob=$(digest_of <"$TEST_TMP/blob")
loc=$(curl -s -D - -o /dev/null -X POST "$src_URL/v2/aborted/blobs/uploads/" |
  tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
[[ -n "$loc" ]] || fail "no upload location for aborted"
[[ "$loc" == http* ]] || loc="$src_URL$loc"
sep='?'
[[ "$loc" == *\?* ]] && sep='&'
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
  --data-binary "@$TEST_TMP/blob" "$loc${sep}digest=$blob")
assert_eq "$code" 201 "blob uploaded into aborted"

# emptied: an image pushed, then its only manifest deleted.
fixturegen push --registry "$src_ADDR" --repo emptied --tag v1 --seed 2 --layers 1 --layer-size 4K \
  --compact >"$TEST_TMP/emptied.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE \
  "$src_URL/v2/emptied/manifests/$(jq -r .digest "$TEST_TMP/emptied.json")")
assert_eq "$code" 202 "emptied's manifest deleted"

# The source now looks as the scenario wants: both listed, neither with a tag.
curl -s "$src_URL/v2/_catalog" >"$TEST_TMP/catalog.json"
assert_eq "$(jq -c '.repositories | sort' "$TEST_TMP/catalog.json")" '["aborted","app","emptied"]' \
  "the source's catalog"
code=$(curl -s -o "$TEST_TMP/aborted.tags" -w '%{http_code}' "$src_URL/v2/aborted/tags/list")
note "aborted: tags/list answers $code $(cat "$TEST_TMP/aborted.tags")"
assert_eq "$code" 404 "aborted's tags/list status"
grep -q NAME_UNKNOWN "$TEST_TMP/aborted.tags" || fail "aborted's tags/list: $(cat "$TEST_TMP/aborted.tags")"
code=$(curl -s -o "$TEST_TMP/emptied.tags" -w '%{http_code}' "$src_URL/v2/emptied/tags/list")
note "emptied: tags/list answers $code $(cat "$TEST_TMP/emptied.tags")"
if [[ "$code" == 200 ]]; then
  jq -e '(.tags // []) | length == 0' "$TEST_TMP/emptied.tags" >/dev/null ||
    fail "emptied still lists tags: $(cat "$TEST_TMP/emptied.tags")"
else
  assert_eq "$code" 404 "emptied's tags/list status"
fi

port=$(free_port)
write_config() { # FILE POLL_INTERVAL
  cat >"$1" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: $2
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML
}
write_config "$TEST_TMP/ferry.yaml" 0

rc=0
timeout 120 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/s1.out" 2>"$TEST_TMP/s1.err" || rc=$?
note "sync exit $rc; stdout: $(cat "$TEST_TMP/s1.out"); stderr: $(tail -n 5 "$TEST_TMP/s1.err")"
if grep -q 'FAILED *polling' "$TEST_TMP/s1.out" "$TEST_TMP/s1.err"; then
  fail "sync reports a polling failure for a repository without tags: $(grep -h 'FAILED *polling' "$TEST_TMP/s1.out" "$TEST_TMP/s1.err")"
fi
assert_eq "$rc" 0 "sync exit status with an aborted push and an emptied repository"
assert_eq "$(skopeo_raw "$dst_ADDR/app:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/app.json")" \
  "app:v1 replicated"
for repo in aborted emptied; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$dst_URL/v2/$repo/tags/list")
  assert_eq "$code" 404 "nothing made at the destination for $repo"
done
rc=0
timeout 60 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" --json >"$TEST_TMP/s2.out" 2>"$TEST_TMP/s2.err" || rc=$?
assert_eq "$rc" 0 "second sync (--json) exit status ($(cat "$TEST_TMP/s2.out"))"
assert_eq "$(jq -c '[.ok, .failed]' "$TEST_TMP/s2.out")" '[true,[]]' "second sync --json: ok, nothing failed"
pass "sync: an aborted push and an emptied repository are empty, not failures"

# ferry serve: rounds over the same source report no poll error.
write_config "$TEST_TMP/serve.yaml" 1s
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$TEST_TMP/serve.yaml" "$port" # "poll round done" is info
# shellcheck disable=SC2317 # called through wait_until
two_rounds() { grep -q 'poll round done rounds=2 ' "$TEST_TMP/ferry.log"; }
wait_until 30 two_rounds || fail "no two poll rounds in 30 s: $(tail -n 5 "$TEST_TMP/ferry.log")"
curl -sf "http://127.0.0.1:$port/v1/status" >"$TEST_TMP/status.json" || fail "GET /v1/status"
grep 'poller' "$TEST_TMP/ferry.log" >"$TEST_TMP/poller.log" || true
if grep -E 'poller: .*(aborted|emptied)' "$TEST_TMP/poller.log"; then
  fail "the poller reports an error for a repository without tags: $(grep -E 'poller: ' "$TEST_TMP/poller.log" | head -n 3)"
fi
grep -q 'poll round done rounds=2 appended=[0-9]* errors=0$' "$TEST_TMP/ferry.log" ||
  fail "poll rounds counted errors: $(grep 'poll round done' "$TEST_TMP/ferry.log")"
poller=$(jq -r '.sources[] | select(.name == "src") | .poller' "$TEST_TMP/status.json")
[[ "$poller" == idle || "$poller" == polling ]] || fail "/v1/status: the source's poller is '$poller'"
pass "serve: the poller's rounds report no error for them"
