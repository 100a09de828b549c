#!/usr/bin/env bash
# Names and sizes from a registry are checked like webhook input. A hostile
# registry (tests/fixtures/hostile_registry.py, in front of a real
# Distribution) lists invalid repository names and tags next to real ones
# ("prod?x" would write "prod", "../../v1" another path), an index of 1001
# children, 501 referrers for a manifest, 100,001 tags in one listing, and a
# tag listing whose next page is itself. Invalid names are skipped with a
# log line naming the registry and the value, and nothing reaches a URL;
# every cap fails the listing or the image with an error naming the limit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo good/app --tag v1 --layers 1 --layer-size 8K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")

n=0
hostile() { # MODE [args...] : sets H
  local mode=$1 port other
  shift
  n=$((n + 1))
  port=$(free_port)
  other=$(free_port)
  start_bg "hostile$n" python3 "$FERRY_SOURCE_DIR/tests/fixtures/hostile_registry.py" --mode "$mode" \
    --port "$port" --other-port "$other" --log "$TEST_TMP/other-$n.log" --upstream "$src_ADDR" "$@"
  H=127.0.0.1:$port
  wait_until 10 curl -s -o /dev/null "http://$H/v2/" || fail "the hostile registry ($mode) did not start"
}
ferry_run() { # NAME ARGS... : RC, $TEST_TMP/NAME.out/.err
  local name=$1
  shift
  RC=0
  timeout 120 "$FERRY" "$@" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || RC=$?
}
CREDS=(--creds alice:pw)

# 1. Invalid names in listings: skipped, logged, never in a URL.
hostile names
ferry_run tags ls "${CREDS[@]}" "$H/good/app"
assert_eq "$RC" 0 "ferry ls of tags with invalid names ($(tail -n 2 "$TEST_TMP/tags.err"))"
assert_eq "$(tr '\n' ' ' <"$TEST_TMP/tags.out")" "v1 " "the tags listed"
skipped=$(grep -c "skipped an invalid tag in the tags of good/app registry=$H" "$TEST_TMP/tags.err" || true)
((skipped >= 5)) || fail "invalid tags were not logged one by one: $(head -c 600 "$TEST_TMP/tags.err")"
grep -q 'value="prod?x"' "$TEST_TMP/tags.err" || fail "the log does not name the value prod?x: $(head -c 600 "$TEST_TMP/tags.err")"
grep -q "skipped 7 invalid names in the tags of good/app" "$TEST_TMP/tags.err" ||
  fail "no count of the invalid tags: $(head -c 600 "$TEST_TMP/tags.err")"
grep -q 'value="new?line"' "$TEST_TMP/tags.err" || fail "a newline in a tag is not shown as ?: $(grep -n 'new' "$TEST_TMP/tags.err")"
if grep -q '^line' "$TEST_TMP/tags.err"; then fail "a newline in a tag reached the log: $(grep -n 'line' "$TEST_TMP/tags.err")"; fi
ferry_run catalog catalog "${CREDS[@]}" "$H"
assert_eq "$RC" 0 "ferry catalog with invalid names ($(tail -n 2 "$TEST_TMP/catalog.err"))"
assert_eq "$(tr '\n' ' ' <"$TEST_TMP/catalog.out")" "good/app " "the repositories listed"
grep -q 'skipped an invalid repository name in the catalog' "$TEST_TMP/catalog.err" ||
  fail "invalid repository names were not logged: $(head -c 600 "$TEST_TMP/catalog.err")"
pass "invalid names in a catalog and a tag listing are skipped, each logged with the registry and the value"

# ferry sync from it: good/app:v1 only; no request with an invalid name anywhere.
cat >"$TEST_TMP/sync.yaml" <<YAML
data_dir: $TEST_TMP/data
registries:
  src: { url: "http://$H", username: alice, password: pw }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML
ferry_run sync sync -c "$TEST_TMP/sync.yaml"
assert_eq "$RC" 0 "ferry sync from a registry listing invalid names ($(tail -n 3 "$TEST_TMP/sync.err"))"
assert_eq "$(skopeo_raw "$dst_ADDR/good/app:v1" | digest_of)" "$want" "good/app:v1 at the destination"
if registry_access_log dst | grep -E '^[A-Z]+ [^ ]*(prod|\.\./|%2[eE]|UPPER|with)' | grep -q .; then
  fail "an invalid name reached the destination: $(registry_access_log dst | grep -E 'prod|\.\./|UPPER' | head -n 2)"
fi
if grep -E '^[A-Z]+ /v2/[^ ]*(prod|/\.\./|%2[eE]|UPPER|with)' "$TEST_TMP/other-1.log.front" | grep -q .; then
  fail "an invalid name reached a URL at the source: $(grep -E 'prod|\.\./|UPPER' "$TEST_TMP/other-1.log.front" | head -n 2)"
fi
pass "ferry sync replicates the valid names only; no invalid name reached a URL"

# ferry serve polling it counts what it skipped, per registry.
port=$(free_port)
cat >"$TEST_TMP/serve.yaml" <<YAML
data_dir: $TEST_TMP/serve-data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  src: { url: "http://$H", username: alice, password: pw }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst, repository: "served/{repo}" }] }
YAML
ferry_serve_start ferry "$TEST_TMP/serve.yaml" "$port"
invalid_counted() {
  local v
  v=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" | awk '$1 == "ferry_registry_invalid_names_total{registry=\"src\"}" { print $2 }')
  [[ -n "$v" ]] && ((v >= 14))
}
wait_until 30 invalid_counted || fail "ferry_registry_invalid_names_total{registry=\"src\"} did not reach 14: $(curl -s "http://127.0.0.1:$port/metrics" | grep invalid_names)"
stop_bg ferry
pass "ferry serve counts the invalid names it skipped in ferry_registry_invalid_names_total"

# 2. Caps: an index of 1001 children, 501 referrers, 100,001 tags, a Link loop.
hostile big-index
ferry_run bigindex copy --no-cache --retries 1 --src-creds alice:pw "$H/big/index:v1" "$dst_ADDR/big/index:v1"
assert_eq "$RC" 1 "copy of an index of 1001 children"
grep -q "$H/big/index@sha256:[0-9a-f]*: an index of 1001 children passes the cap of 1000 manifests" "$TEST_TMP/bigindex.err" ||
  fail "the error does not name the registry and the cap: $(tail -n 2 "$TEST_TMP/bigindex.err")"
if grep -q '^GET /v2/big/index/manifests/sha256:' "$TEST_TMP/other-$n.log.front"; then
  fail "children were asked for: $(grep -c '^GET /v2/big/index/manifests/sha256:' "$TEST_TMP/other-$n.log.front") GETs"
fi
pass "an index of 1001 children is refused before any child is asked for"

hostile referrers
ferry_run referrers copy --no-cache --retries 1 --src-creds alice:pw "$H/good/app:v1" "$dst_ADDR/refs/app:v1"
assert_eq "$RC" 1 "copy of a manifest with 501 referrers"
grep -q "$H/good/app@$want lists 501 referrers: refused (the cap is 500 per manifest)" "$TEST_TMP/referrers.err" ||
  fail "the error does not name the registry and the cap: $(tail -n 2 "$TEST_TMP/referrers.err")"
pass "501 referrers of one manifest are refused, naming the cap"

hostile tags-cap
ferry_run tagscap ls "${CREDS[@]}" "$H/good/app"
assert_eq "$RC" 1 "ls of 100,001 tags"
grep -q "the tags of good/app at $H holds more than 100000 names: refused" "$TEST_TMP/tagscap.err" ||
  fail "the error does not name the cap: $(tail -n 2 "$TEST_TMP/tagscap.err")"
pass "a listing of 100,001 tags fails, naming the cap"

hostile link-loop
ferry_run linkloop ls "${CREDS[@]}" "$H/good/app"
assert_eq "$RC" 1 "ls of a listing whose next page is itself"
grep -q "next page is the page itself" "$TEST_TMP/linkloop.err" ||
  fail "the error does not say why: $(tail -n 2 "$TEST_TMP/linkloop.err")"
pass "a listing whose next page is itself fails at once"
