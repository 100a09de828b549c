#!/usr/bin/env bash
# An event no rule selects is answered as ignored and not journaled. The only
# rule selects repository `app`. One Distribution notification envelope with
# 100 pushes of other/x and 1 of app: the reply says accepted 1, ignored >= 100,
# last_seq 1; `ferry journal ls` lists app and nothing of other/x; an envelope
# of unselected events alone moves nothing (accepted 0, last_seq unchanged,
# journal stats unchanged). Then the journal's bytes per event (its RocksDB
# files, WAL included, while serving) for 5000 unselected events against 5000
# selected ones: printed as figures, and unselected must cost under 20% of
# selected.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

# Neither registry answers (refused ports): the selected events' jobs wait
# for their retries and journal nothing of their own (a job that reached the
# source would journal what the source says of the made-up tags).
down_port=$(free_port)
src_down_port=$(free_port)
port=$(free_port)
API="http://127.0.0.1:$port"
# The source and the destination are down, so the selected events' jobs wait
# quietly: this test is about the journal.
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
retry: { attempts: 20, base: 30s, max: 60s }
circuit: { failures: 1, open_for: 1h }
registries:
  src: { url: "http://127.0.0.1:$src_down_port", poll: false }
  dst: { url: "http://127.0.0.1:$down_port" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: dst }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

# events.py OUT ID_PREFIX [REPO:COUNT]... : one Distribution envelope of manifest
# pushes, REPO:COUNT pushes of REPO with tags t<i> and distinct ids and digests
cat >"$TEST_TMP/events.py" <<'PY'
import hashlib, json, sys
out, prefix, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
events = []
for spec in specs:
    repo, count = spec.rsplit(":", 1)
    for i in range(int(count)):
        eid = "%s-%s-%d" % (prefix, repo.replace("/", "_"), i)
        digest = "sha256:" + hashlib.sha256(eid.encode()).hexdigest()
        events.append({"id": eid, "timestamp": "2026-12-02T10:00:00Z", "action": "push",
                       "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                  "digest": digest, "size": 500, "length": 500,
                                  "repository": repo, "tag": "t%d" % i},
                       "request": {"id": "r-" + eid, "addr": "127.0.0.1", "host": "src",
                                   "method": "PUT", "useragent": "docker"},
                       "source": {"addr": "src:5000"}})
json.dump({"events": events}, open(out, "w"))
PY
J() { timeout 30 "$FERRY" journal -c "$TEST_TMP/ferry.yaml" "$@"; }
last_seq() { J stats | awk '$1 == "last_seq" { print $2 }'; }

# 1. 100 unselected and 1 selected event in one envelope.
python3 "$TEST_TMP/events.py" "$TEST_TMP/mixed.json" mixed other/x:100 app:1
assert_eq "$(events_post "$API" "$TEST_TMP/mixed.json")" 200 "webhook status"
note "answer: $(cat "$TEST_TMP/resp")"
accepted=$(jq .accepted "$TEST_TMP/resp")
ignored=$(jq .ignored "$TEST_TMP/resp")
assert_eq "$accepted" 1 "accepted (100 events of other/x, which no rule selects, and 1 of app)"
((ignored >= 100)) || fail "ignored is $ignored, want >= 100 (the events of other/x): $(cat "$TEST_TMP/resp")"
assert_eq "$(jq .duplicates "$TEST_TMP/resp")" 0 "duplicates"
assert_eq "$(jq .last_seq "$TEST_TMP/resp")" 1 "last_seq after one journaled event"
J ls --json >"$TEST_TMP/ls.json"
assert_eq "$(jq -s '[.[] | select(.repository == "app")] | length' "$TEST_TMP/ls.json")" 1 "app's event is journaled"
assert_eq "$(jq -s '[.[] | select(.repository == "other/x")] | length' "$TEST_TMP/ls.json")" 0 "other/x events journaled"
assert_eq "$(wc -l <"$TEST_TMP/ls.json")" 1 "journal entries"
pass "100 unselected + 1 selected: accepted 1, ignored $ignored, only app journaled"

# 2. Unselected alone: nothing moves.
seq_before=$(last_seq)
python3 "$TEST_TMP/events.py" "$TEST_TMP/other.json" alone other/x:50 other/y:50
assert_eq "$(events_post "$API" "$TEST_TMP/other.json")" 200 "webhook status"
assert_eq "$(jq -c '{accepted, duplicates}' "$TEST_TMP/resp")" '{"accepted":0,"duplicates":0}' "unselected alone"
(($(jq .ignored "$TEST_TMP/resp") >= 100)) || fail "unselected alone not ignored: $(cat "$TEST_TMP/resp")"
assert_eq "$(jq .last_seq "$TEST_TMP/resp")" "$seq_before" "last_seq in the answer"
assert_eq "$(last_seq)" "$seq_before" "journal last_seq"
ign=$(curl -sf --max-time 5 "$API/metrics" | awk '$1 == "ferry_webhook_events_total{outcome=\"ignored\"}" { print $2 }')
((${ign:-0} >= 200)) || fail "ferry_webhook_events_total{outcome=\"ignored\"} is ${ign:-absent}, want >= 200"
pass "unselected events alone: accepted 0, last_seq stays $seq_before, counted ignored ($ign)"

# 3. What an event costs the journal: its RocksDB files (SSTs and WAL; not the
# info LOGs or OPTIONS) before and after 5000 events, once the size is steady.
jbytes() {
  find "$TEST_TMP/data/journal" -maxdepth 1 -type f \( -name '*.sst' -o -name '[0-9]*.log' -o -name 'MANIFEST-*' \) \
    -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}
steady() { # waits until jbytes is the same twice 0.5 s apart; prints it
  local a b i
  a=$(jbytes)
  for ((i = 0; i < 40; i++)); do
    sleep 0.5
    b=$(jbytes)
    [[ "$a" == "$b" ]] && break
    a=$b
  done
  echo "$b"
}
post_batches() { # PREFIX REPO : 5000 events of REPO in 10 envelopes of 500
  local b
  for b in $(seq 0 9); do
    python3 "$TEST_TMP/events.py" "$TEST_TMP/batch.json" "$1$b" "$2:500"
    assert_eq "$(events_post "$API" "$TEST_TMP/batch.json")" 200 "batch $b of $2"
  done
}
s0=$(steady)
post_batches unsel other/z
s1=$(steady)
assert_eq "$(last_seq)" "$seq_before" "journal last_seq after 5000 unselected events"
post_batches sel app
s2=$(steady)
(($(last_seq) >= seq_before + 5000)) || fail "the 5000 selected events were not journaled: last_seq $(last_seq)"
unsel=$(((s1 - s0) / 5000))
sel=$(((s2 - s1) / 5000))
note "figure: journal bytes per unselected event $unsel ($((s1 - s0)) bytes for 5000), per selected event $sel ($((s2 - s1)) bytes for 5000)"
((sel > 0)) || fail "selected events cost no journal bytes ($s1 -> $s2): the measure is broken"
((unsel * 5 < sel)) || fail "an unselected event costs the journal $unsel bytes, not under 20% of a selected one's $sel"
pass "an unselected event costs the journal $unsel bytes (a selected one $sel)"

kill -TERM "$ferry_PID"
wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not exit on SIGTERM"
note "figure: journal files after the stop: $(du -sb "$TEST_TMP/data/journal" | cut -f1) bytes (du), $(jbytes) bytes (SSTs, WAL, MANIFEST)"
