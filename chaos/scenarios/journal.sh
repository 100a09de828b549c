#!/usr/bin/env bash
# journal: `ferry serve` is killed with SIGKILL again and again (20 times; 6
# with --short) during heavy webhook ingest: tests/tools/ingest_load drives
# 16 keep-alive clients flat out, and a client that redelivers what was not
# acknowledged (as registries do) records every id it got a 200 for. After
# the last restart every acknowledged event is in the journal exactly once,
# seqs strictly increase, and ingest_load's acknowledged count is covered.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry
FERRY=$(ferry_bin)
LOAD="${INGEST_LOAD:-$(dirname "$FERRY")/ingest_load}"
[[ -x "$LOAD" ]] || fail "ingest_load not found at $LOAD (cmake --build build --target ingest_load)"

chaos_seed
kills=20 load_s=60
if chaos_short; then
  kills=6 load_s=20
fi
figure "journal seed=$seed kills=$kills load_seconds=$load_s"

FERRY_PORT=$(free_port)
# Nothing is replicated: neither registry answers, and the engine holds one
# entry at a time (engine_window: 1), so it stays out of the way and the
# journal takes all the load. The rule selects every repository: events no
# rule selects are not journaled at all.
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 0
engine_window: 1
registries:
  src: { url: "http://127.0.0.1:1", poll: false }
  dst: { url: "http://127.0.0.1:2" }
rules:
  - { name: all, source: src, repositories: ["**"], destinations: [{ registry: dst }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

start_bg load "$LOAD" --url "http://127.0.0.1:$FERRY_PORT/v1/events/src" --clients 16 \
  --duration "$load_s" --events-per-request 10 --run-id "chaos-$seed" --json
start_bg client python3 "$FERRY_SOURCE_DIR/chaos/webhook_client.py" "$FERRY_PORT" src \
  "$TEST_TMP/acked.txt" "$load_s" 4 "acked-$seed"

start=$SECONDS
for ((k = 1; k <= kills; k++)); do
  # Spread the kills over the load: its length divided by the kills, give or take.
  gap=$((load_s * 1000 / (kills + 1)))
  ms=$((gap / 2 + RANDOM % gap))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  kill -KILL "$ferry_PID"
  wait "$ferry_PID" 2>/dev/null || true
  ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"
done
kill_seconds=$((SECONDS - start))
wait "$load_PID" || fail "ingest_load failed: $(tail -n 3 "$TEST_TMP/load.log")"
wait "$client_PID" || fail "the redelivering client failed: $(tail -n 3 "$TEST_TMP/client.log")"
load_json=$(grep '^{' "$TEST_TMP/load.log" | tail -n 1)
client_json=$(grep '^{' "$TEST_TMP/client.log" | tail -n 1)

"$FERRY" journal -c "$TEST_TMP/ferry.yaml" ls --json >"$TEST_TMP/ls.json"
jq -r .event_id "$TEST_TMP/ls.json" | sort >"$TEST_TMP/journaled.txt"
sort -u "$TEST_TMP/acked.txt" >"$TEST_TMP/acked.sorted"
entries=$(wc -l <"$TEST_TMP/journaled.txt")
dups=$(uniq -d "$TEST_TMP/journaled.txt" | wc -l)
acked=$(wc -l <"$TEST_TMP/acked.sorted")
missing=$(comm -23 "$TEST_TMP/acked.sorted" "$TEST_TMP/journaled.txt" | wc -l)
unacked=$(jq .unacked <<<"$client_json")
load_acked=$(jq .events <<<"$load_json")
load_journaled=$(grep -c "^chaos-$seed" "$TEST_TMP/journaled.txt" || true)
not_increasing=$(jq -s 'map(.seq) as $s | [range(1; $s | length) | select($s[.] <= $s[. - 1])] | length' "$TEST_TMP/ls.json")
rate=$(jq '.events_per_s | floor' <<<"$load_json")

figure "journal kills=$kills over ${kill_seconds}s journal_entries=$entries load_events_per_s=$rate"
figure "journal redelivering_client acked=$acked missing=$missing unacked_batches_left=$unacked retries=$(jq .retries <<<"$client_json")"
figure "journal ingest_load acked=$load_acked journaled=$load_journaled duplicates=$dups seqs_not_increasing=$not_increasing"

((acked > 1000)) || fail "only $acked events acknowledged: the scenario proved little"
assert_eq "$dups" 0 "no event journaled twice"
assert_eq "$missing" 0 "every acknowledged event is in the journal"
assert_eq "$not_increasing" 0 "seqs strictly increase"
assert_eq "$unacked" 0 "every batch was acknowledged in the end"
((load_journaled >= load_acked)) || fail "ingest_load had $load_acked events acknowledged, the journal holds $load_journaled"
pass "journal: $kills kill -9 during ingest; $acked + $load_acked acknowledged events, each journaled exactly once"
