#!/usr/bin/env bash
# Two tags of one image (app:v1 and app:latest, one digest: one job record)
# pushed while the destination is down, then a restart: both tags arrive once
# the destination is back. The jobs wait parked, the engine's cursor passes
# their entries, and the parked cursor must bring both back at the restart:
# it was never stored when its first value was 0 (a fresh data_dir), so the
# restart took the engine's cursor for it, and only the job named by the one
# shared PENDING record ran again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

registry_start src
registry_start d1
port=$(free_port)
API="http://127.0.0.1:$port"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
retry: { attempts: 20, base: 1s, max: 2s }
circuit: { failures: 2, open_for: 2s }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: d1 }] }
YAML

st() { curl -sf --max-time 5 "$API/v1/status"; }
parked_past() { # the engine's cursor passed both entries, and both jobs wait
  local s
  s=$(st) || return 1
  jq -e '.journal.cursor >= 2 and (.destinations[] | select(.name == "d1") | .backlog == 2)' <<<"$s" >/dev/null
}

fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed restart-tags --layers 1 --layer-size 4K --compact >"$TEST_TMP/img.json"
digest=$(jq -r .digest "$TEST_TMP/img.json")
mtype=$(jq -r .media_type "$TEST_TMP/img.json")
skopeo copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
  "docker://$src_ADDR/app:v1" "docker://$src_ADDR/app:latest"

registry_stop d1
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
for tag in v1 latest; do
  event_post "$API" "" "restart-tags-$tag" push app "$digest" "$tag" "$mtype"
done
wait_until 30 parked_past || fail "the jobs did not park behind the cursor: $(st | jq -c '{journal, destinations}')"
note "before the restart: $(st | jq -c '{cursor: .journal.cursor, d1: (.destinations[] | select(.name == "d1") | {backlog, circuit})}')"

stop_bg ferry
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
registry_restart d1
for tag in v1 latest; do
  took=$(manifest_arrives_within 60000 "$d1_URL" app "$tag" "$digest") ||
    fail "app:$tag did not reach d1 after the restart: $(st | jq -c '.destinations')"
  note "app:$tag at d1 $took ms after it came back"
done
pass "both tags of one image, parked at a restart, reached the destination"
