#!/usr/bin/env bash
# partition: one of three destinations is blackholed (the proxy accepts and
# reads, never answers) for 60 s (20 s with --short) while images are pushed
# to the source steadily. The other destinations' lag stays under 2 s, the
# partitioned destination's circuit opens, and after the heal its backlog
# drains with no FAILED job and every destination matches the source.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry

# A request that moves no byte for stall_timeout fails: that is how a
# blackhole shows. The full run keeps Ferry's default (20 s).
partition_s=60 drain_s=240 verify_s=60 stall=20s
if chaos_short; then
  partition_s=20 drain_s=40 verify_s=15 stall=4s
fi

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
    --layers 1 --layer-size 64K --compact >/dev/null && echo "$n" >>"$2.pushed"
  n=$((n + 1))
  sleep 0.3
done
SH
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
note "d1 partitioned for $partition_s s"
sample partition "$partition_s"
proxy_rules p1 delete
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
converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" "$verify_s" && converged=1

lag_others=$(jq -s '[.[] | select(.phase == "partition") | .d[] | select(.name != "d1") | .lag_seconds] | max // 0' "$TEST_TMP/status.jsonl")
lag_d1=$(jq -s '[.[] | select(.phase == "partition") | .d[] | select(.name == "d1") | .lag_seconds] | max // 0' "$TEST_TMP/status.jsonl")
backlog_d1=$(jq -s '[.[] | .d[] | select(.name == "d1") | .backlog] | max // 0' "$TEST_TMP/status.jsonl")
opened=$(jq -s '[.[] | select(.phase == "partition" or .phase == "healed") | .d[] | select(.name == "d1" and .circuit != "closed")] | length' "$TEST_TMP/status.jsonl")
failed_total=$(chaos_failed_total)
blackholed=$(proxy_fault_count p1 blackhole)

figure "partition seconds=$partition_s images_pushed=$pushed blackholed_requests=$blackholed"
figure "partition max_lag_other_destinations_s=$lag_others max_lag_partitioned_s=$lag_d1 max_backlog_partitioned=$backlog_d1"
figure "partition circuit_not_closed_samples=$opened drained=$drained drain_seconds_after_heal=$drain_seconds converged=$converged failed_jobs=$failed_total"

awk -v l="$lag_others" 'BEGIN { exit !(l < 2) }' || fail "the other destinations lagged $lag_others s during the partition"
((blackholed > 0)) || fail "nothing was blackholed: the scenario proved nothing"
((opened > 0)) || fail "d1's circuit never opened during a $partition_s s partition ($(tail -n 1 "$TEST_TMP/status.jsonl"))"
((drained)) || fail "the backlog did not drain within $drain_s s of the heal: $(chaos_api /v1/status | jq -c '[.destinations[] | {name, backlog, in_flight, circuit}]')"
assert_eq "$failed_total" 0 "no FAILED job ($(chaos_api /v1/failures | jq -c '.failures[:2]'))"
((converged)) || fail "the destinations do not match the source: $(head -n 3 "$TEST_TMP/verify.out")"
pass "partition: others lagged at most $lag_others s, the circuit opened, drained $drain_seconds s after the heal"
