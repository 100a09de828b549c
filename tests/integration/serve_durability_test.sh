#!/usr/bin/env bash
# Durability: while a client posts events, `ferry serve` is killed with
# SIGKILL several times and restarted. Every event that got a 200 is in the
# journal exactly once afterwards, at the seq its answer gave it (the batch's
# last_seq), and in the order of acknowledgement seqs strictly increase (a
# restart never hands out a seq again, nor one below an acknowledged one).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
registries:
  src: { url: "http://127.0.0.1:1", poll: false }
  dst: { url: "http://127.0.0.1:2" }
rules:
  - { name: r, source: src, repositories: ["**"], destinations: [{ registry: dst }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

# The client: batches of 5 generic events with unique ids, posted one after
# another for a bounded time; each acknowledged id goes to acked.txt with the
# seq the answer gave it (a batch of 5 new events ending at last_seq holds
# last_seq-4 .. last_seq, in order), in the order of acknowledgement.
cat >"$TEST_TMP/client.py" <<'PY'
import http.client, json, sys, time, hashlib
port, out, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline = time.time() + seconds
n = 0
with open(out, "a") as acked:
    while time.time() < deadline:
        ids = [f"dur-{n}-{i}" for i in range(5)]
        n += 1
        events = [{"id": i, "action": "push", "repository": "load/app",
                   "digest": "sha256:" + hashlib.sha256(i.encode()).hexdigest(), "tag": "t"} for i in ids]
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/v1/events/src", json.dumps({"events": events}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            if r.status == 200:
                answer = json.loads(body)
                if answer["accepted"] != 5 or answer["duplicates"] != 0:
                    sys.exit("batch %d: answer %s" % (n, body))
                last = answer["last_seq"]
                acked.write("".join("%s %d\n" % (i, last - 4 + k) for k, i in enumerate(ids)))
                acked.flush()
            c.close()
        except Exception:
            time.sleep(0.02)
PY
start_bg client python3 "$TEST_TMP/client.py" "$port" "$TEST_TMP/acked.txt" 12

kills=0
for round in 1 2 3 4 5; do
  sleep "0.$((RANDOM % 8 + 3))"
  kill -KILL "$ferry_PID"
  wait "$ferry_PID" 2>/dev/null || true
  kills=$((kills + 1))
  ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
done
client_rc=0
wait "$client_PID" || client_rc=$?
assert_eq "$client_rc" 0 "the client saw only answers of 5 new events ($(tail -n 2 "$TEST_TMP/client.log"))"
sleep 0.5
cut -d' ' -f1 "$TEST_TMP/acked.txt" | sort -u >"$TEST_TMP/acked_ids.txt"
acked=$(wc -l <"$TEST_TMP/acked_ids.txt")
[ "$acked" -gt 100 ] || fail "only $acked events acknowledged; the test proved little"

"$FERRY" journal -c "$TEST_TMP/ferry.yaml" ls --json >"$TEST_TMP/ls.json"
jq -r .event_id "$TEST_TMP/ls.json" | sort >"$TEST_TMP/journaled.txt"
dups=$(uniq -d "$TEST_TMP/journaled.txt" | wc -l)
assert_eq "$dups" 0 "no event journaled twice"
missing=$(comm -23 "$TEST_TMP/acked_ids.txt" "$TEST_TMP/journaled.txt" | wc -l)
assert_eq "$missing" 0 "every acknowledged event is in the journal"
# Seqs, not in the scan's order (ordered by seq by construction) but in the
# order of acknowledgement: each acknowledged event is journaled at the seq its
# answer gave it, and those seqs strictly increase down acked.txt.
jq -r '"\(.event_id) \(.seq)"' "$TEST_TMP/ls.json" | sort >"$TEST_TMP/journaled_seqs.txt"
awk 'NR == FNR { seq[$1] = $2; next }
     { n++
       if (seq[$1] != $2) { printf "%s: journaled at seq %s, acknowledged as seq %s\n", $1, seq[$1], $2; bad++ }
       if (n > 1 && $2 <= prev) { printf "%s: seq %s acknowledged after seq %s\n", $1, $2, prev; bad++ }
       prev = $2 }
     END { exit bad > 0 }' "$TEST_TMP/journaled_seqs.txt" "$TEST_TMP/acked.txt" >"$TEST_TMP/seq_errors.txt" ||
  fail "$(wc -l <"$TEST_TMP/seq_errors.txt") acknowledged seqs wrong: $(head -n 5 "$TEST_TMP/seq_errors.txt")"
pass "$kills kill -9 restarts: $acked acknowledged events, each journaled exactly once"
