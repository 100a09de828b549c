#!/usr/bin/env bash
# Durability: while a client posts events, `ferry serve` is killed with
# SIGKILL several times and restarted. Every event that got a 200 is in the
# journal exactly once afterwards, and seqs strictly increase.
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
# another for a bounded time; each acknowledged id goes to acked.txt.
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
            r.read()
            if r.status == 200:
                acked.write("\n".join(ids) + "\n")
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
wait "$client_PID" || true
sleep 0.5
acked=$(sort -u "$TEST_TMP/acked.txt" | wc -l)
[ "$acked" -gt 100 ] || fail "only $acked events acknowledged; the test proved little"

"$FERRY" journal -c "$TEST_TMP/ferry.yaml" ls --json >"$TEST_TMP/ls.json"
jq -r .event_id "$TEST_TMP/ls.json" | sort >"$TEST_TMP/journaled.txt"
dups=$(uniq -d "$TEST_TMP/journaled.txt" | wc -l)
assert_eq "$dups" 0 "no event journaled twice"
missing=$(sort -u "$TEST_TMP/acked.txt" | comm -23 - "$TEST_TMP/journaled.txt" | wc -l)
assert_eq "$missing" 0 "every acknowledged event is in the journal"
jq -s 'map(.seq) as $s | [range(1; $s | length) | select($s[.] <= $s[. - 1])] | length' "$TEST_TMP/ls.json" |
  grep -qx 0 || fail "seqs do not strictly increase"
pass "$kills kill -9 restarts: $acked acknowledged events, each journaled exactly once"
