#!/usr/bin/env bash
# `ferry status --wait` (the deploy gate) and GET /v1/images agree with the
# source registry, not only with Ferry's job records. The source does not
# poll and sends no notifications: the test posts the events itself, so a
# push can happen without Ferry hearing of it, and an old event can arrive
# late. A destination is COMPLETE only when its tag names what the source's
# tag names now (by digest: when it holds that manifest); a tag missing at
# the source, or a registry that cannot be asked, keeps --wait waiting; a
# daemon stopped during a lookup still answers it and exits cleanly.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
TOKEN=status-src-$RANDOM$RANDOM
export FERRY_WEBHOOK_TOKEN=$TOKEN

registry_start src
registry_start d1
registry_start d2
port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
webhook_token_env: FERRY_WEBHOOK_TOKEN
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR", poll: false, stall_timeout: 5s }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: gate, source: src, destinations: [{ registry: d1 }, { registry: d2, repository: "mirror/{repo}" }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
API="http://127.0.0.1:$port"
status() { "$FERRY" status -c "$TEST_TMP/ferry.yaml" "$@"; }

# event NAME DIGEST SIZE : post a Distribution push notification for gate/app:t.
event() {
  local code
  code=$(curl -s -o "$TEST_TMP/event.out" -w '%{http_code}' -X POST \
    -H "Content-Type: application/vnd.docker.distribution.events.v1+json" \
    -H "Authorization: Bearer $TOKEN" --data-binary @- "$API/v1/events/src" <<JSON
{"events":[{"id":"evt-$1","timestamp":"2026-12-01T10:00:00Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$2","size":$3,"repository":"gate/app","tag":"t"}}]}
JSON
  )
  assert_eq "$code" 200 "event $1 accepted ($(cat "$TEST_TMP/event.out"))"
}

# push SEED : push gate/app:t to src; sets DIGEST and SIZE (of the manifest).
push() {
  fixturegen push --registry "$src_ADDR" --repo gate/app --tag t --seed "$1" --layers 1 \
    --layer-size 20K --compact >"$TEST_TMP/$1.json"
  DIGEST=$(jq -r .digest "$TEST_TMP/$1.json")
  skopeo_raw "$src_ADDR/gate/app@$DIGEST" >"$TEST_TMP/$1.manifest"
  SIZE=$(wc -c <"$TEST_TMP/$1.manifest")
}

# holds ADDR REPO : the digest REPO:t names at ADDR (nothing when absent).
holds() {
  if skopeo_raw "$1/$2:t" >"$TEST_TMP/holds.raw" 2>/dev/null; then
    digest_of <"$TEST_TMP/holds.raw"
  fi
}

# 1. A is pushed and announced: --wait gives 0 once both destinations hold it.
push a
A=$DIGEST A_size=$SIZE
event a "$A" "$A_size"
status --wait --image gate/app:t --timeout 60 >"$TEST_TMP/wait-a.out" ||
  fail "--wait for A did not exit 0: $(cat "$TEST_TMP/wait-a.out")"
assert_eq "$(holds "$d1_ADDR" gate/app)" "$A" "d1 holds A"
assert_eq "$(holds "$d2_ADDR" mirror/gate/app)" "$A" "d2 holds A"
img=$(status --image gate/app:t --json)
assert_eq "$(jq -r '[.destinations[].state] | join(" ")' <<<"$img")" "COMPLETE COMPLETE" "A is COMPLETE"
pass "A announced and replicated: --wait exits 0"

# 2. B is pushed, and Ferry hears nothing: the destinations still hold A,
# which is no longer what the source's tag names. Nothing may say COMPLETE.
push b
B=$DIGEST B_size=$SIZE
assert_ne "$B" "$A" "B differs from A"
status --image gate/app:t >"$TEST_TMP/table-b.out" 2>&1 || true
if grep -E '^d[12] ' "$TEST_TMP/table-b.out" | grep -q COMPLETE; then
  fail "ferry status --image says COMPLETE for a tag the source moved: $(cat "$TEST_TMP/table-b.out")"
fi
rc=0
status --wait --image gate/app:t --timeout 3 >"$TEST_TMP/wait-b0.out" 2>&1 || rc=$?
assert_eq "$rc" 2 "--wait while the destinations hold the old digest: timeout ($(cat "$TEST_TMP/wait-b0.out"))"
img=$(status --image gate/app:t --json)
jq -e '[.destinations[] | select(.state == "COMPLETE")] | length == 0' <<<"$img" >/dev/null ||
  fail "a destination holding A is COMPLETE for B: $img"
assert_eq "$(jq -r '.digest' <<<"$img")" "$B" "/v1/images names the source's digest now"
assert_eq "$(jq -r '.source | "\(.name) \(.registry) \(.digest)"' <<<"$img")" "src $src_ADDR $B" "the source"
assert_eq "$(jq -r '[.destinations[] | "\(.name)=\(.state)/\(.digest)/\(.current_digest)"] | join(" ")' <<<"$img")" \
  "d1=PENDING/$B/$A d2=PENDING/$B/$A" "each destination: PENDING for B, its tag still names A"
# By digest: B is nowhere yet, A is held everywhere.
img=$(status --image "gate/app@$B" --json)
jq -e '[.destinations[] | select(.state == "COMPLETE")] | length == 0' <<<"$img" >/dev/null ||
  fail "B is COMPLETE by digest before any destination holds it: $img"
rc=0
status --wait --image "gate/app@$B" --timeout 2 >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "--wait by digest on B before it is replicated: timeout"
status --wait --image "gate/app@$A" --timeout 10 >/dev/null || fail "A by digest is not COMPLETE"
pass "an unannounced push: nothing says COMPLETE, --wait keeps waiting"

# 3. B's event arrives: --wait exits 0 and the destinations hold B.
event b "$B" "$B_size"
status --wait --image gate/app:t --timeout 60 >"$TEST_TMP/wait-b.out" ||
  fail "--wait for B did not exit 0: $(cat "$TEST_TMP/wait-b.out")"
assert_eq "$(holds "$d1_ADDR" gate/app)" "$B" "d1 holds B"
assert_eq "$(holds "$d2_ADDR" mirror/gate/app)" "$B" "d2 holds B"
status --wait --image "gate/app@$B" --timeout 10 >/dev/null || fail "B by digest is not COMPLETE"
pass "B announced: --wait exits 0 and every destination holds B"

# 4. A late (or forged) event for A: the newest job for the tag now names A,
# but the source still says B, and so does the gate.
event a-late "$A" "$A_size"
sleep 2 # the late job runs (and is superseded at the source)
img=$(status --image gate/app:t --json)
assert_eq "$(jq -r '.digest' <<<"$img")" "$B" "a late event for A does not change the image's digest"
status --wait --image gate/app:t --timeout 20 >"$TEST_TMP/wait-late.out" ||
  fail "--wait after a late event for A did not exit 0: $(cat "$TEST_TMP/wait-late.out")"
assert_eq "$(holds "$d1_ADDR" gate/app)" "$B" "d1 still holds B"
pass "a late event for an old digest: the gate follows the source"

# 5. A tag the source does not have: 404 naming it; --wait keeps waiting.
code=$(curl -s -o "$TEST_TMP/nope.json" -w '%{http_code}' "$API/v1/images?repository=gate/app&tag=nope")
assert_eq "$code" 404 "a tag missing at the source"
jq -e '.error | test("not at the source")' "$TEST_TMP/nope.json" >/dev/null ||
  fail "404 without a clear error: $(cat "$TEST_TMP/nope.json")"
rc=0
status --image gate/app:nope >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 1 "ferry status --image of a tag the source lacks: exit 1"
rc=0
status --wait --image gate/app:nope --timeout 2 2>"$TEST_TMP/wait-nope.err" >/dev/null || rc=$?
assert_eq "$rc" 2 "--wait on a tag the source lacks: timeout"
grep -q 'not at the source' "$TEST_TMP/wait-nope.err" || fail "--wait did not say why: $(cat "$TEST_TMP/wait-nope.err")"
pass "a tag missing at the source: 404, and --wait waits for it"

# 6. A destination that cannot be asked is not COMPLETE; the others are.
registry_stop d2
img=$(curl -s -m 15 "$API/v1/images?repository=gate/app&tag=t")
assert_eq "$(jq -r '.destinations[] | select(.name == "d1") | .state' <<<"$img")" COMPLETE "d1 while d2 is down"
assert_ne "$(jq -r '.destinations[] | select(.name == "d2") | .state' <<<"$img")" COMPLETE "d2 while it is down"
jq -e --arg a "$d2_ADDR" '.destinations[] | select(.name == "d2") | .check_error | test($a)' <<<"$img" >/dev/null ||
  fail "d2's check error does not name it: $img"
status --wait --image gate/app:t --dest d1 --timeout 20 >/dev/null || fail "--wait --dest d1 while d2 is down"
rc=0
status --wait --image gate/app:t --timeout 3 >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "--wait on every destination while d2 is down: timeout"
pass "a destination that cannot be asked is not COMPLETE"

# 7. The source cannot be asked: 503 naming it; --wait keeps waiting.
registry_stop src
code=$(curl -s -m 15 -o "$TEST_TMP/down.json" -w '%{http_code}' "$API/v1/images?repository=gate/app&tag=t")
[[ "$code" == 502 || "$code" == 503 ]] || fail "source down: HTTP $code $(cat "$TEST_TMP/down.json")"
jq -e --arg a "$src_ADDR" '.error | test("src") and test($a)' "$TEST_TMP/down.json" >/dev/null ||
  fail "the error does not name the source registry: $(cat "$TEST_TMP/down.json")"
rc=0
status --wait --image gate/app:t --dest d1 --timeout 3 >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "--wait while the source is down: timeout"
pass "the source down: $code naming it, --wait keeps waiting"

# 8. A stop while lookups wait on a source that accepts connections and
# answers nothing: each lookup is answered once, by its deadline, and the
# daemon exits cleanly once the registry calls give up.
registry_restart src
kill -STOP "$src_PID"
on_exit "kill -CONT $src_PID 2>/dev/null"
t0=$SECONDS
code=$(curl -s -m 15 -o "$TEST_TMP/hung.json" -w '%{http_code}' "$API/v1/images?repository=gate/app&tag=t")
assert_eq "$code" 503 "a source that does not answer ($(cat "$TEST_TMP/hung.json"))"
((SECONDS - t0 <= 5)) || fail "the lookup took $((SECONDS - t0)) s"
jq -e '.error | test("did not answer")' "$TEST_TMP/hung.json" >/dev/null || fail "$(cat "$TEST_TMP/hung.json")"
lookups=()
for i in 1 2 3; do
  curl -s -m 30 -o "$TEST_TMP/stop$i.json" -w '%{http_code}' "$API/v1/images?repository=gate/app&tag=t" \
    >"$TEST_TMP/stop$i.code" &
  lookups+=($!)
done
sleep 0.5
kill -TERM "$ferry_PID"
# shellcheck disable=SC2317 # called through wait_until
ferry_gone() { ! kill -0 "$ferry_PID" 2>/dev/null; }
wait_until 30 ferry_gone || fail "ferry serve did not stop within 30 s of SIGTERM"
rc=0
wait "$ferry_PID" || rc=$?
assert_eq "$rc" 0 "ferry serve's exit status after the stop"
wait "${lookups[@]}" || true
for i in 1 2 3; do
  assert_eq "$(cat "$TEST_TMP/stop$i.code")" 503 "lookup $i during the stop ($(cat "$TEST_TMP/stop$i.json" 2>/dev/null))"
done
kill -CONT "$src_PID"
if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$TEST_TMP/ferry.log"; then
  fail "the sanitizers complained: $(grep -m3 -E 'AddressSanitizer|runtime error|LeakSanitizer' "$TEST_TMP/ferry.log")"
fi
pass "a stop during lookups: each answered, clean exit"
