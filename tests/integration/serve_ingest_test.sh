#!/usr/bin/env bash
# Webhook ingest: a real Distribution registry with notifications pointed at
# `ferry serve` (carrying the token); every manifest push appears in the
# journal exactly once with its digest, blob events are ignored; redelivery is
# deduplicated; Harbor and generic payloads; every malformed request gets its
# status and journals nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
TOKEN=ingest-token-$RANDOM$RANDOM
export FERRY_WEBHOOK_TOKEN=$TOKEN

port=$(free_port)
registry_start src --notify "http://127.0.0.1:$port/v1/events/us-east" --notify-token "$TOKEN"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
webhook_token_env: FERRY_WEBHOOK_TOKEN
poll_interval: 0
registries:
  us-east: { url: "http://$src_ADDR", poll: false }
  eu-west: { url: "http://127.0.0.1:1" }
rules:
  - name: dr
    source: us-east
    repositories: ["**"]
    destinations: [{ registry: eu-west }]
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
J() { "$FERRY" journal -c "$TEST_TMP/ferry.yaml" "$@"; }

# 1. Pushes to the registry arrive through its notifications.
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 2 --layer-size 10K --compact >"$TEST_TMP/a.json"
fixturegen push --registry "$src_ADDR" --repo team/multi --tag v2 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 10K --compact >"$TEST_TMP/m.json"
a=$(jq -r .digest "$TEST_TMP/a.json")
m=$(jq -r .digest "$TEST_TMP/m.json")
want=$((1 + 1 + 2)) # app:v1, the index, its two children by digest
wait_until 20 bash -c "[ \$($FERRY journal -c $TEST_TMP/ferry.yaml ls --json | wc -l) -ge $want ]" ||
  fail "journal has $(J ls --json | wc -l) entries, want $want"
sleep 1.5 # any late redelivery would show up as a duplicate
J ls --json >"$TEST_TMP/ls.json"
assert_eq "$(wc -l <"$TEST_TMP/ls.json")" "$want" "one entry per manifest push, no blob events"
assert_eq "$(jq -r 'select(.repository=="app" and .tag=="v1") | .digest' "$TEST_TMP/ls.json")" "$a" "app:v1 digest"
assert_eq "$(jq -r 'select(.repository=="team/multi" and .tag=="v2") | .digest' "$TEST_TMP/ls.json")" "$m" "index digest"
for child in $(jq -r '.children[]' "$TEST_TMP/m.json"); do
  assert_eq "$(jq -r --arg d "$child" 'select(.digest==$d) | .action' "$TEST_TMP/ls.json")" push "child $child journaled"
done
assert_eq "$(jq -r .seq "$TEST_TMP/ls.json" | tr '\n' ' ')" "1 2 3 4 " "seqs 1..4"
assert_eq "$(jq -s '[.[].event_id] | unique | length' "$TEST_TMP/ls.json")" 4 "distinct event ids"
pass "Distribution notifications journaled once each, blobs ignored"

post() { # CONTENT_TYPE BODY_FILE [TOKEN] [SOURCE] -> prints status, body to $TEST_TMP/resp
  curl -s -o "$TEST_TMP/resp" -w '%{http_code}' -X POST -H "Content-Type: $1" \
    ${3:+-H "Authorization: Bearer $3"} --data-binary "@$2" "http://127.0.0.1:$port/v1/events/${4:-us-east}"
}
d1=sha256:$(printf one | sha256sum | cut -d' ' -f1)
d2=sha256:$(printf two | sha256sum | cut -d' ' -f1)

# 2. The same delivery twice: one entry.
cat >"$TEST_TMP/dist.json" <<JSON
{"events":[
 {"id":"evt-1","timestamp":"2026-11-26T10:00:00.123Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$d1","size":10,"repository":"svc","tag":"1.0"}},
 {"id":"evt-2","timestamp":"2026-11-26T10:00:00Z","action":"push","target":{"mediaType":"application/octet-stream","digest":"$d2","size":10,"repository":"svc"}},
 {"id":"evt-3","timestamp":"2026-11-26T10:00:01Z","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$d1","repository":"svc","tag":"1.0"}}
]}
JSON
ct=application/vnd.docker.distribution.events.v1+json
assert_eq "$(post $ct "$TEST_TMP/dist.json" "$TOKEN")" 200 "first delivery"
assert_eq "$(jq -c '{accepted,duplicates,ignored,last_seq}' "$TEST_TMP/resp")" '{"accepted":1,"duplicates":0,"ignored":2,"last_seq":5}' "first answer"
assert_eq "$(post $ct "$TEST_TMP/dist.json" "$TOKEN")" 200 "second delivery"
assert_eq "$(jq -c '{accepted,duplicates}' "$TEST_TMP/resp")" '{"accepted":0,"duplicates":1}' "redelivery is a duplicate"
# (Entries the engine journals of its own, what it learns at the source about
# the made-up images here, have event ids "source:…": not counted.)
hooks() { J ls --json | jq -c 'select(.event_id | startswith("source:") | not)' | wc -l; }
assert_eq "$(hooks)" 5 "one entry for two deliveries"
pass "redelivery deduplicated"

# 3. Harbor and generic payloads.
cat >"$TEST_TMP/harbor.json" <<JSON
{"type":"PUSH_ARTIFACT","occur_at":1764151200,"operator":"admin","event_data":{"resources":[{"digest":"$d2","tag":"2.0","resource_url":"h/lib/web:2.0"}],"repository":{"name":"web","namespace":"lib","repo_full_name":"lib/web","repo_type":"private"}}}
JSON
assert_eq "$(post application/json "$TEST_TMP/harbor.json" "$TOKEN")" 200 "harbor"
cat >"$TEST_TMP/generic.json" <<JSON
{"events":[{"id":"g-1","action":"push","repository":"gen/app","digest":"$d1","tag":"x","mediaType":"application/vnd.oci.image.manifest.v1+json"},
           {"id":"g-2","action":"delete","repository":"gen/app","tag":"old"}]}
JSON
assert_eq "$(post application/json "$TEST_TMP/generic.json" "$TOKEN")" 200 "generic"
J ls --json --after 5 | jq -c 'select(.event_id | startswith("source:") | not)' >"$TEST_TMP/new.json"
assert_eq "$(jq -r '[.repository, .tag, .action] | join(":")' "$TEST_TMP/new.json" | tr '\n' ' ')" \
  "lib/web:2.0:push gen/app:x:push gen/app:old:delete " "harbor and generic entries"
pass "Harbor and generic payloads"

# 4. Malformed and refused requests: their status, and nothing journaled.
before=$(hooks)
printf '{"events":[' >"$TEST_TMP/trunc.json"
printf '{"events":[{"id":"b1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:nothex","repository":"x","tag":"1"}}]}' >"$TEST_TMP/baddigest.json"
printf '{"events":[{"id":"b2","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","repository":"../etc","tag":"1"}}]}' "$d1" >"$TEST_TMP/badrepo.json"
printf '{"events":[{"id":"ok","action":"push","repository":"fine","digest":"%s"},{"action":"push","repository":"fine","digest":"%s"}]}' "$d1" "$d2" >"$TEST_TMP/missingid.json"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$TEST_TMP/huge.json"
assert_eq "$(post application/json "$TEST_TMP/trunc.json" "$TOKEN")" 400 "truncated JSON"
jq -e '.error | length > 0' "$TEST_TMP/resp" >/dev/null || fail "400 without a JSON error"
assert_eq "$(post $ct "$TEST_TMP/baddigest.json" "$TOKEN")" 400 "bad digest"
assert_eq "$(post $ct "$TEST_TMP/badrepo.json" "$TOKEN")" 400 "path traversal repository"
assert_eq "$(post application/json "$TEST_TMP/missingid.json" "$TOKEN")" 400 "one event without id rejects the payload"
assert_eq "$(post application/json "$TEST_TMP/huge.json" "$TOKEN")" 413 "body over 1 MiB"
assert_eq "$(post application/json "$TEST_TMP/generic.json")" 401 "no token"
assert_eq "$(post application/json "$TEST_TMP/generic.json" wrong-token)" 401 "wrong token"
assert_eq "$(post application/json "$TEST_TMP/generic.json" "$TOKEN" nowhere)" 404 "unknown source"
assert_eq "$(hooks)" "$before" "nothing journaled by refused requests"
if grep -q "$TOKEN" "$TEST_TMP/ferry.log"; then fail "the token reached the log"; fi
pass "malformed requests refused with their status, nothing journaled"

# 5. ferry journal show / stats / append by hand while the daemon runs.
J show 1 | jq -e ".seq == 1 and .event_id != null" >/dev/null || fail "show 1"
# (stats before ls: an entry the engine journals in between may only make ls's last seq higher)
stats_seq=$(J stats | awk '$1 == "last_seq" { print $2 }')
ls_seq=$(J ls --json | tail -1 | jq -r .seq)
((stats_seq > 0 && stats_seq <= ls_seq)) || fail "stats last_seq $stats_seq, ls ends at $ls_seq"
J append --source us-east --repo manual/app --digest "$d2" --tag hand >/dev/null
# -s and any(): `jq -e 'select(...)'` over a stream exits by the LAST entry
# alone (jq 1.6), so it failed whenever the engine journaled another entry
# after this one.
J ls --json | jq -s -e 'any(.[]; .repository == "manual/app" and .tag == "hand" and .action == "push")' >/dev/null ||
  fail "append by hand"
pass "journal show, stats and append (through the daemon)"
