#!/usr/bin/env bash
# A manifest deleted at the source while a slow destination is still copying
# it. The push's jobs of one entry share one look at the source's tag (for a
# few seconds): d2, fast, looks (t names D) and is done; then the source
# deletes D, and the delete by digest runs at d1 while d1's push job is still
# uploading blobs (d1 sits behind a proxy that holds every upload request
# 1.5 s), so it deletes nothing there. When d1's push reaches its tag, the
# shared look still says t names D. It must not put D back at d1: neither
# the tag nor the manifest by digest may be there once the journal drained,
# and d2 must have neither either.
set -euo pipefail
source "$(dirname "$0")/../../chaos/lib.sh"
require_ferry

TOKEN=delrace-$RANDOM$RANDOM
export FERRY_WEBHOOK_TOKEN=$TOKEN
port=$(free_port)
API=http://127.0.0.1:$port
registry_start src --delete
registry_start d1 --delete
registry_start d2 --delete
proxy_start p1 "$d1_ADDR" '* /blobs/uploads/ delay_ms=1500'
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
webhook_token_env: FERRY_WEBHOOK_TOKEN
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$p1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, deletes: true, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

post() { event_post "$API" "$TOKEN" "$@"; } # ID ACTION REPO DIGEST TAG
at() { manifest_ref_digest "$@"; } # BASE_URL REPO REF
holds() { [[ "$(at "$1" "$2" "$3")" == "$4" ]]; }
drained() {
  curl -sf "$API/v1/status" | jq -e '.journal.cursor == .journal.last_seq and
    all(.destinations[]; .backlog == 0 and .in_flight == 0)' >/dev/null
}

D=$(fixturegen push --registry "$src_ADDR" --repo app --tag t --seed delrace --layers 2 --layer-size 20K --compact | jq -r .digest)
post push-1 push app "$D" t
wait_until 20 holds "$d2_URL" app t "$D" || fail "d2 never got D"
holds "$d1_URL" app t "$D" && fail "d1 got D as fast as d2: the proxy did not hold it back, the test proves nothing"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/app/manifests/$D")
assert_eq "$code" 202 "DELETE at the source"
post delete-2 delete app "$D" ""
wait_until 30 drained || fail "the journal did not drain: $(curl -s "$API/v1/status" | jq -c .destinations)"
grep -q "dest=d1 .*digest=$D" "$TEST_TMP/ferry.log" || note "no line of d1's jobs for D in the log"
for d in d1 d2; do
  url="${d}_URL"
  assert_eq "$(at "${!url}" app t)" 404 "$d's tag t after the source deleted D"
  assert_eq "$(at "${!url}" app "$D")" 404 "$d's manifest $D after the source deleted it"
done
pass "a push whose shared look at the source is older than a delete that ran at its destination puts nothing back"
