#!/usr/bin/env bash
# partition: one of three destinations is blackholed (the proxy accepts and
# reads, never answers) for 60 s (20 s with --short) while images are pushed
# to the source steadily. The other destinations' lag stays under 2 s,
# measured from outside Ferry: a watcher (chaos/watch_tags.py --arrivals)
# asks d2 and d3 for every pushed tag until it is there, and each tag pushed
# during the partition must have arrived at both within 2 s of its push having
# returned. The partitioned destination's circuit opens, and after the heal
# its backlog drains with no FAILED job and every destination matches the
# source.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry

# A request that moves no byte for stall_timeout fails: that is how a
# blackhole shows. The full run keeps Ferry's default (20 s).
partition_s=60 drain_s=240 verify_s=60 stall=20s
if chaos_short; then
  partition_s=20 drain_s=40 verify_s=15 stall=4s
fi

lag_bound=2
chaos_faults "1 of 3 destinations blackholed for $partition_s s while images were pushed"
FERRY_PORT=$(free_port)
registry_start src --notify "http://127.0.0.1:$FERRY_PORT/v1/events/src"
for d in d1 d2 d3; do
  registry_start "$d"
done
proxy_start p1 "$d1_ADDR"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 0
retry: { attempts: 8, base: 500ms, max: 5s }
circuit: { failures: 3, open_for: 5s }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$p1_ADDR", stall_timeout: $stall }
  d2: { url: "http://$d2_ADDR" }
  d3: { url: "http://$d3_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2 }, { registry: d3 }] }
YAML
sed -e "s#$p1_ADDR#$d1_ADDR#" -e "s#^data_dir: .*#data_dir: $TEST_TMP/verify-data#" \
  "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

# A steady stream of small images, one every half second or so, until told to stop.
cat >"$TEST_TMP/pusher.sh" <<'SH'
n=0
while [ ! -e "$2.stop" ] && [ $n -lt 2000 ]; do
  python3 "$FIXTUREGEN" push --registry "$1" --repo "part/app$((n % 5))" --tag "t$n" --seed "part-$n" \
    --layers 1 --layer-size 64K --compact >/dev/null && echo "part/app$((n % 5)) t$n $EPOCHREALTIME" >>"$2.pushed"
  n=$((n + 1))
  sleep 0.3
done
SH
start_bg watcher python3 "$FERRY_SOURCE_DIR/chaos/watch_tags.py" --arrivals "$TEST_TMP/pusher.pushed" \
  "$TEST_TMP/arrivals.txt" "$TEST_TMP/watch.stop" 0.05 "d2=$d2_URL" "d3=$d3_URL"
start_bg pusher bash "$TEST_TMP/pusher.sh" "$src_ADDR" "$TEST_TMP/pusher"

# sample PHASE SECONDS: /v1/status every half second into status.jsonl
sample() {
  local phase=$1 end=$((SECONDS + $2))
  while ((SECONDS < end)); do
    chaos_api /v1/status | jq -c --arg p "$phase" '{phase: $p, d: [.destinations[] | {name, lag_seconds, backlog, circuit, failed_total}]}' \
      >>"$TEST_TMP/status.jsonl" || true
    sleep 0.5
  done
}

sample warmup 5
proxy_rules p1 put '* * blackhole'
partition_from=$EPOCHREALTIME
note "d1 partitioned for $partition_s s"
sample partition "$partition_s"
proxy_rules p1 delete
partition_to=$EPOCHREALTIME
heal=$SECONDS
note "healed"
sample healed 5
touch "$TEST_TMP/pusher.stop"
wait "$pusher_PID" 2>/dev/null || true
pushed=$(wc -l <"$TEST_TMP/pusher.pushed")

drained=0
drain() {
  chaos_api /v1/status | jq -c '{phase: "drain", d: [.destinations[] | {name, lag_seconds, backlog, circuit, failed_total}]}' \
    >>"$TEST_TMP/status.jsonl" || true
  chaos_idle
}
wait_until "$drain_s" drain && drained=1
drain_seconds=$((SECONDS - heal))
# Every pushed tag arrives at both healthy destinations (the watcher's view).
all_arrived() {
  (($(grep -c . "$TEST_TMP/arrivals.txt" 2>/dev/null || echo 0) >= 2 * pushed))
}
wait_until 15 all_arrived || note "the watcher saw $(grep -c . "$TEST_TMP/arrivals.txt" || true) of $((2 * pushed)) arrivals"
touch "$TEST_TMP/watch.stop"
wait "$watcher_PID" 2>/dev/null || true
converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" "$verify_s" && converged=1

ferry_lag_others=$(jq -s '[.[] | select(.phase == "partition") | .d[] | select(.name != "d1") | .lag_seconds] | max // 0' "$TEST_TMP/status.jsonl")
# From outside: the arrivals of the tags pushed during the partition.
during=$(awk -v from="$partition_from" -v to="$partition_to" '$3 >= from && $3 <= to' "$TEST_TMP/pusher.pushed" | wc -l)
awk -v from="$partition_from" -v to="$partition_to" '
  NR == FNR { if ($3 >= from && $3 <= to) want[$1 " " $2] = 1; next }
  ($2 " " $3) in want { print $6 }' "$TEST_TMP/pusher.pushed" "$TEST_TMP/arrivals.txt" | sort -n >"$TEST_TMP/lags.txt"
arrived_during=$(wc -l <"$TEST_TMP/lags.txt")
lag_others=$(tail -n 1 "$TEST_TMP/lags.txt")
lag_others=${lag_others:-0}
lag_p50=$(awk '{ l[NR] = $1 } END { print NR ? l[int((NR + 1) / 2)] : 0 }' "$TEST_TMP/lags.txt")
lag_all=$(awk '$6 > m { m = $6 } END { printf "%.3f\n", m + 0 }' "$TEST_TMP/arrivals.txt")
lag_d1=$(jq -s '[.[] | select(.phase == "partition") | .d[] | select(.name == "d1") | .lag_seconds] | max // 0' "$TEST_TMP/status.jsonl")
backlog_d1=$(jq -s '[.[] | .d[] | select(.name == "d1") | .backlog] | max // 0' "$TEST_TMP/status.jsonl")
opened=$(jq -s '[.[] | select(.phase == "partition" or .phase == "healed") | .d[] | select(.name == "d1" and .circuit != "closed")] | length' "$TEST_TMP/status.jsonl")
failed_total=$(chaos_failed_total)
blackholed=$(proxy_fault_count p1 blackhole)

figure "partition seconds=$partition_s images_pushed=$pushed blackholed_requests=$blackholed"
figure "partition watched: tags_pushed_during_partition=$during arrivals_at_d2_d3=$arrived_during max_lag_s=$lag_others p50_lag_s=$lag_p50 max_lag_whole_run_s=$lag_all (Ferry's own figure: $ferry_lag_others)"
figure "partition max_lag_partitioned_s=$lag_d1 max_backlog_partitioned=$backlog_d1"
figure "partition circuit_not_closed_samples=$opened drained=$drained drain_seconds_after_heal=$drain_seconds converged=$converged failed_jobs=$failed_total"

((during >= 5)) || fail "only $during tags pushed during the partition: the scenario proved little"
assert_eq "$arrived_during" "$((2 * during))" "every tag pushed during the partition arrived at d2 and d3 (the watcher saw it)"
awk -v l="$lag_others" -v b="$lag_bound" 'BEGIN { exit !(l < b) }' ||
  fail "the other destinations lagged $lag_others s during the partition (watched from outside; bound $lag_bound s): $(sort -k6 -nr "$TEST_TMP/arrivals.txt" | head -n 2 | tr '\n' ';')"
((blackholed > 0)) || fail "nothing was blackholed: the scenario proved nothing"
((opened > 0)) || fail "d1's circuit never opened during a $partition_s s partition ($(tail -n 1 "$TEST_TMP/status.jsonl"))"
((drained)) || fail "the backlog did not drain within $drain_s s of the heal: $(chaos_api /v1/status | jq -c '[.destinations[] | {name, backlog, in_flight, circuit}]')"
assert_eq "$failed_total" 0 "no FAILED job ($(chaos_api /v1/failures | jq -c '.failures[:2]'))"
((converged)) || fail "the destinations do not match the source: $(head -n 3 "$TEST_TMP/verify.out")"
chaos_row "1 of 3 destinations blackholed for $partition_s s while $pushed images were pushed" \
  "**pass**: each of the $during tags pushed during the partition was at both other destinations within $lag_others s of its push (a watcher on their tags; median $lag_p50 s; bound $lag_bound s); the partitioned destination's circuit opened (\`stall_timeout\` $stall) and its backlog ($backlog_d1 jobs) drained $drain_seconds s after the heal with no FAILED job"
pass "partition: others lagged at most $lag_others s (watched), the circuit opened, drained $drain_seconds s after the heal"
