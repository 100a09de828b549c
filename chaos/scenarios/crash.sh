#!/usr/bin/env bash
# crash: `ferry serve` is killed with SIGKILL at random moments (30 times; 8
# with --short) and restarted at once, while images are pushed to the source
# (registry notifications into the webhook) and replicated to two
# destinations. The pushes move one tag per repository to a new digest each
# time, in a known order; a watcher polls that tag at every destination.
# After the last restart every destination converges (`ferry verify` clean)
# and no watcher ever saw a tag move backwards in push order, and no job
# FAILED: neither in the journal's job records (which survive the restarts)
# nor in the last daemon's /v1/failures.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry

chaos_seed
kills=30 converge_s=240
if chaos_short; then
  kills=8 converge_s=60
fi
figure "crash seed=$seed kills=$kills (CHAOS_SEED=$seed repeats the kill timing)"
chaos_faults "$kills \`kill -9\` of \`ferry serve\` while images were pushed"

FERRY_PORT=$(free_port)
registry_start src --notify "http://127.0.0.1:$FERRY_PORT/v1/events/src"
registry_start d1
registry_start d2
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2, repository: "dr/{repo}" }] }
YAML
sed -e "s#^data_dir: .*#data_dir: $TEST_TMP/verify-data#" "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

# Pushes: push n moves crash/r(n%2):t to a new image (1 layer, 64 KiB to 1 MiB);
# pushes.txt records "REPO DIGEST" in push order.
cat >"$TEST_TMP/pusher.sh" <<'SH'
n=0
while [ ! -e "$2.stop" ] && [ $n -lt 1000 ]; do
  repo="crash/r$((n % 2))"
  size=$(( (n * 7919 % 16 + 1) * 64 ))K
  d=$(python3 "$FIXTUREGEN" push --registry "$1" --repo "$repo" --tag t --seed "crash-$3-$n" \
    --layers 1 --layer-size "$size" --compact | jq -r .digest) && echo "$repo $d" >>"$2.txt"
  n=$((n + 1))
done
SH
watch_args=()
for r in r0 r1; do
  watch_args+=("d1:$r=$d1_URL/v2/crash/$r/manifests/t" "d2:$r=$d2_URL/v2/dr/crash/$r/manifests/t")
done
start_bg watcher python3 "$FERRY_SOURCE_DIR/chaos/watch_tags.py" "$TEST_TMP/seen.txt" "$TEST_TMP/watch.stop" 0.05 "${watch_args[@]}"
start_bg pusher bash "$TEST_TMP/pusher.sh" "$src_ADDR" "$TEST_TMP/pushes" "$seed"

start=$SECONDS
for ((k = 1; k <= kills; k++)); do
  # Anywhere from 0.2 s to 3 s after the last restart: during pushes, ingest,
  # uploads, tag moves and journal writes alike.
  sleep "$((RANDOM % 3)).$((RANDOM % 10))$((RANDOM % 10))"
  sleep 0.2
  kill -KILL "$ferry_PID"
  wait "$ferry_PID" 2>/dev/null || true
  ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"
done
kill_seconds=$((SECONDS - start))
# A few more pushes after the last restart, then the pushes stop.
sleep 2
touch "$TEST_TMP/pushes.stop"
wait "$pusher_PID" 2>/dev/null || true
pushed=$(wc -l <"$TEST_TMP/pushes.txt")

converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" "$converge_s" && converged=1
# The watcher sees the final tags too before it stops.
last_r0=$(awk '$1 == "crash/r0" { d = $2 } END { print d }' "$TEST_TMP/pushes.txt")
last_r1=$(awk '$1 == "crash/r1" { d = $2 } END { print d }' "$TEST_TMP/pushes.txt")
seen_final() {
  local name want
  for name in d1:r0 d2:r0 d1:r1 d2:r1; do
    want=$last_r0
    [[ "$name" == *:r1 ]] && want=$last_r1
    [[ "$(awk -v name="$name" '$1 == name { d = $2 } END { print d }' "$TEST_TMP/seen.txt")" == "$want" ]] || return 1
  done
}
wait_until 10 seen_final || note "the watcher did not see every final tag"
touch "$TEST_TMP/watch.stop"
wait "$watcher_PID" 2>/dev/null || true

# Backwards: for each watched tag, the push index of each digest seen must increase.
backwards=$(chaos_backwards "$TEST_TMP/pushes.txt" "$TEST_TMP/seen.txt")
moves=$(wc -l <"$TEST_TMP/seen.txt")
failures=$(chaos_api /v1/failures | jq '.failures | length')
failed_records=$(chaos_failed_jobs "$TEST_TMP/ferry.yaml")
entries=$(chaos_api /v1/status | jq .journal.last_seq)

figure "crash kills=$kills over ${kill_seconds}s images_pushed=$pushed journal_entries=$entries tag_moves_seen=$moves"
figure "crash converged=$converged backwards=$(grep -c . <<<"$backwards" || true) failed_jobs=$failures failed_job_records=$failed_records"
((pushed >= kills)) || fail "only $pushed images pushed: the scenario proved little"
[[ -z "$backwards" ]] || fail "a tag moved backwards: $(head -n 5 <<<"$backwards")"
((converged)) || fail "no convergence after the last restart: $(head -n 5 "$TEST_TMP/verify.out")"
seen_final || fail "converged, but the watcher did not see the final tags"
assert_eq "$failed_records" 0 "no FAILED job in the journal ($("$(ferry_bin)" journal -c "$TEST_TMP/ferry.yaml" jobs --state FAILED | head -n 2))"
assert_eq "$failures" 0 "no FAILED job listed by the daemon ($(chaos_api /v1/failures | jq -c '.failures[:2]'))"
chaos_row "$kills \`kill -9\` of \`ferry serve\` in $kill_seconds s while $pushed images were pushed (one tag per repository moved again and again)" \
  "**pass**: converged (\`ferry verify\` clean), $moves tag moves watched at 2 destinations, none backwards, no FAILED job (0 in the journal's job records, 0 listed)"
pass "crash: $kills kill -9 restarts, $pushed images, converged, no tag moved backwards ($moves moves seen)"
