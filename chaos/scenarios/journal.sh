#!/usr/bin/env bash
# journal: `ferry serve` is killed with SIGKILL again and again (20 times; 6
# with --short) during heavy webhook ingest: tests/tools/ingest_load drives
# 16 keep-alive clients flat out, and a client that redelivers what was not
# acknowledged (as registries do) records every id it got a 200 for;
# ingest_load records every request it got a 200 for (--acked-file). After the
# last restart tests/tools/ingest_load_check.py checks, event by event and by
# id, that every acknowledged event of both is in the journal exactly once;
# that the journal's seqs are consecutive (no seq twice, no gap: each append
# takes the next seqs); and that a client's events are journaled in the order
# it had them acknowledged (a request answered 200 before the next was sent
# has lower seqs). The checker is first shown doctored journals it must refuse.
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
chaos_faults "$kills \`kill -9\` during ${load_s} s of webhook ingest"

CHECK="$FERRY_SOURCE_DIR/tests/tools/ingest_load_check.py"

# The checker refuses what it must: a journal that lost an acknowledged event
# (hidden behind an unacknowledged one that was journaled, so the counts still
# add up), holds an event twice, skips a seq, or journaled a client's later
# request first.
python3 - "$TEST_TMP/doctored" <<'PY'
import json, os, sys
d = sys.argv[1]
os.makedirs(d)
def write(name, rows):
    with open(f"{d}/{name}.json", "w") as f:
        for seq, eid in enumerate(rows, 1):
            f.write(json.dumps({"seq": seq, "event_id": eid}) + "\n")
ids = [f"run-{c}-{r}-{k}" for c in range(2) for r in range(3) for k in range(10)]
ids += [f"pre-{t}-{b}-{i}" for t in range(2) for b in range(2) for i in range(10)]
with open(f"{d}/load.acked", "w") as f:
    f.write("".join(f"{c} {r}\n" for c in range(2) for r in (0, 2)))  # request 1: no 200
with open(f"{d}/client.acked", "w") as f:
    f.write("".join(i + "\n" for i in ids if i.startswith("pre-")))
write("good", ids)
write("hidden", [("run-1-1-9x" if i == "run-1-2-4" else i) for i in ids])
write("twice", ids + ["run-0-1-3"])
write("swapped", [i.replace("run-0-0-", "T").replace("run-0-2-", "run-0-0-").replace("T", "run-0-2-") for i in ids])
write("client_lost", [i for i in ids if i != "pre-1-1-5"] + ["pre-x"])
with open(f"{d}/gap.json", "w") as f:
    for seq, eid in enumerate(ids, 1):
        f.write(json.dumps({"seq": seq + (seq > 7), "event_id": eid}) + "\n")
PY
check_doctored() { # NAME
  python3 "$CHECK" "$TEST_TMP/doctored/$1.json" --load "run:10:$TEST_TMP/doctored/load.acked" \
    --client "pre:$TEST_TMP/doctored/client.acked" >"$TEST_TMP/doctored/$1.out" 2>&1
}
check_doctored good || fail "the checker refuses a sound journal: $(cat "$TEST_TMP/doctored/good.out")"
for bad in hidden twice swapped client_lost gap; do
  if check_doctored "$bad"; then
    fail "the checker passed a doctored journal ($bad): $(cat "$TEST_TMP/doctored/$bad.out")"
  fi
done
note "the checker refuses doctored journals: an acknowledged event lost behind an unacknowledged one, one twice, out of acknowledgement order, a client's event lost, a seq gap"

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
  --duration "$load_s" --events-per-request 10 --run-id "chaos-$seed" --json \
  --acked-file "$TEST_TMP/load.acked"
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
check_rc=0
python3 "$CHECK" "$TEST_TMP/ls.json" --load "chaos-$seed:10:$TEST_TMP/load.acked" \
  --client "acked-$seed:$TEST_TMP/acked.txt" >"$TEST_TMP/check.json" 2>"$TEST_TMP/check.err" || check_rc=$?
((check_rc <= 1)) || fail "the journal checker failed: $(cat "$TEST_TMP/check.err")"
check=$(tail -n 1 "$TEST_TMP/check.json")
c() { jq ".$1" <<<"$check"; }
entries=$(c entries)
client_acked=$(grep -c . "$TEST_TMP/acked.txt" || true)
load_acked=$(jq .events <<<"$load_json")
load_acked_recorded=$(($(grep -c . "$TEST_TMP/load.acked" || true) * 10))
unacked=$(jq .unacked <<<"$client_json")
rate=$(jq '.events_per_s | floor' <<<"$load_json")

figure "journal kills=$kills over ${kill_seconds}s journal_entries=$entries seqs=$(c first_seq)..$(c last_seq) load_events_per_s=$rate"
figure "journal acknowledged: redelivering_client=$client_acked ingest_load=$load_acked (recorded by id: $load_acked_recorded) unacked_batches_left=$unacked retries=$(jq .retries <<<"$client_json")"
figure "journal checked_by_id=$(c acked) missing=$(c missing) duplicates=$(c duplicates) out_of_ack_order=$(c out_of_ack_order) seq_gaps=$(c seq_gaps) seqs_not_increasing=$(c seqs_not_increasing)"

((client_acked > 1000)) || fail "only $client_acked events acknowledged to the redelivering client: the scenario proved little"
assert_eq "$load_acked_recorded" "$load_acked" "ingest_load recorded every acknowledged request"
assert_eq "$(c acked)" "$((client_acked + load_acked))" "every acknowledged event was checked"
assert_eq "$(c missing)" 0 "every acknowledged event is in the journal ($(head -n 2 "$TEST_TMP/check.err"))"
assert_eq "$(c duplicates)" 0 "no event journaled twice"
assert_eq "$(c seqs_not_increasing)" 0 "seqs increase in the journal"
assert_eq "$(c seq_gaps)" 0 "no seq skipped ($(head -n 2 "$TEST_TMP/check.err"))"
assert_eq "$(c first_seq)" 1 "the journal starts at seq 1 (nothing was deleted)"
assert_eq "$(c out_of_ack_order)" 0 "each client's events journaled in the order they were acknowledged ($(head -n 2 "$TEST_TMP/check.err"))"
assert_eq "$unacked" 0 "every batch was acknowledged in the end"
assert_eq "$check_rc" 0 "the journal checker found nothing ($(head -n 2 "$TEST_TMP/check.err"))"
chaos_row "$kills \`kill -9\` during ${load_s} s of webhook ingest ($(chaos_num "$rate") events/s)" \
  "**pass**: $(chaos_millions "$entries") events journaled; of $(chaos_num "$client_acked") acknowledged to a redelivering client and $(chaos_num "$load_acked") to the load generator, each checked by id: every one journaled exactly once, each client's in the order of its acknowledgements; seqs $(c first_seq)–$(chaos_num "$(c last_seq)") with no gap or repeat"
pass "journal: $kills kill -9 during ingest; $client_acked + $load_acked acknowledged events, each journaled exactly once, in acknowledgement order"
