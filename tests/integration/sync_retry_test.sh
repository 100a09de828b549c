#!/usr/bin/env bash
# Retries and the circuit breaker.
# 1. ferry sync: a destination down through every retry: sync exits 1 listing
#    the FAILED job and why, the other destination completes; `ferry retry`
#    requeues the failed job and the next sync completes it.
# 2. ferry serve: a destination down (its registry stopped behind the fault
#    proxy, which answers 502 and counts every request that reaches it), one
#    job at a time, `circuit: {failures: 2, open_for: 3s}`. Checked from
#    outside where possible: the circuit opens after exactly 2 failed attempts
#    (2 x 6 requests at the proxy: the client tries a request 6 times); status
#    and /metrics say open; nothing reaches the destination for open_for, then
#    one probe (one attempt) per period; a healthy destination gets a push
#    made meanwhile (the circuit holds only its own destination's jobs); once
#    the registry is back the circuit closes (status, metric 0), every tag
#    arrives and no job ended FAILED.
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start up
registry_start down
registry_stop down
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 1 --layer-size 20K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  up: { url: "http://$up_ADDR" }
  down: { url: "http://$down_ADDR" }
rules:
  - { name: r, source: src, destinations: [{ registry: up }, { registry: down }] }
YAML

set +e
timeout 120 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s1.err"
rc=$?
set -e
assert_eq "$rc" 1 "sync with a failed job exits 1"
grep -q "^FAILED *down app@$want" "$TEST_TMP/s1.err" || fail "the failed job is not listed: $(cat "$TEST_TMP/s1.err")"
grep -q 'registry unreachable' "$TEST_TMP/s1.err" || fail "the reason is not given: $(cat "$TEST_TMP/s1.err")"
assert_eq "$(skopeo_raw "$up_ADDR/app:v1" | digest_of)" "$want" "the healthy destination completed"
pass "a FAILED job is listed with its reason; the other destination completes"

registry_restart down
"$FERRY" retry -c "$TEST_TMP/ferry.yaml" --dest down >"$TEST_TMP/retry.out"
grep -qx 'requeued 1 failed job' "$TEST_TMP/retry.out" || fail "retry: $(cat "$TEST_TMP/retry.out")"
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s2.err" || fail "sync after retry: $(cat "$TEST_TMP/s2.err")"
assert_eq "$(skopeo_raw "$down_ADDR/app:v1" | digest_of)" "$want" "the retried job completed"
set +e
"$FERRY" retry -c "$TEST_TMP/ferry.yaml" 2>/dev/null
rc=$?
set -e
assert_eq "$rc" 2 "retry without --dest or --all-failed is a usage error"
pass "ferry retry requeues the failed job and the next sync completes it"

# ---- 2. the circuit breaker, under ferry serve ----
FAILURES=2          # circuit.failures
OPEN_MS=3000        # circuit.open_for
REQUEST_TRIES=6     # the registry client tries a request 6 times (REGISTRY_DEFAULT_MAX_ATTEMPTS)
PER_ATTEMPT=$REQUEST_TRIES # an attempt at the down destination is one manifest HEAD, tried that often
registry_start far
proxy_start gw "$far_ADDR"
registry_stop far
for t in t1 t2 t3; do
  fixturegen push --registry "$src_ADDR" --repo svc --tag "$t" --seed "circuit-$t" --layers 1 --layer-size 8K --compact >"$TEST_TMP/$t.json"
done
port=$(free_port)
API="http://127.0.0.1:$port"
cat >"$TEST_TMP/serve.yaml" <<YAML
data_dir: $TEST_TMP/serve-data
listen: 127.0.0.1:$port
poll_interval: 1s
retry: { attempts: 20, base: 100ms, max: 200ms }
circuit: { failures: $FAILURES, open_for: ${OPEN_MS}ms }
registries:
  src: { url: "http://$src_ADDR" }
  up: { url: "http://$up_ADDR" }
  down: { url: "http://$gw_ADDR", max_concurrency: 1 }
rules:
  - { name: s, source: src, repositories: [svc], destinations: [{ registry: up }, { registry: down }] }
YAML
LOG="$TEST_TMP/ferry.log"
ferry_serve_start ferry "$TEST_TMP/serve.yaml" "$port"

reached() { proxy_stats gw .requests; }
down_status() { curl -sf --max-time 5 "$API/v1/status" | jq -c '.destinations[] | select(.name == "down")'; }
circuit_metric() {
  curl -sf --max-time 5 "$API/metrics" >"$TEST_TMP/metrics.txt" || fail "/metrics did not answer"
  awk '$1 == "ferry_circuit_open{destination=\"down\"}" { print $2 }' "$TEST_TMP/metrics.txt"
}
opens() { grep -c 'circuit open dest=down ' "$LOG" || true; }
open_line() { grep 'circuit open dest=down ' "$LOG" | sed -n "${1}p"; }
stamp_ms() { date -d "${1%% *}" +%s%3N; } # a log line's RFC 3339 stamp, in ms
at() { [[ "$(skopeo_raw "$1/svc:$2" 2>/dev/null | digest_of)" == "$(jq -r .digest "$TEST_TMP/$2.json")" ]]; }

# The circuit opens after exactly FAILURES failed attempts; the attempt that
# opens it logs its retry right after the circuit's line.
wait_until 30 bash -c "grep -q 'circuit open dest=down ' '$LOG'" ||
  fail "the circuit did not open in 30 s: $(grep 'dest=down' "$LOG" | tail -3)"
at_open=$(reached)
status_open=$(down_status)
metric_open=$(circuit_metric)
grep -E 'circuit open dest=down |job failed, retrying dest=down ' "$LOG" >"$TEST_TMP/down.lines"
first=$(grep -n 'circuit open dest=down ' "$TEST_TMP/down.lines" | head -1 | cut -d: -f1)
assert_eq "$((first - 1))" "$((FAILURES - 1))" "failed attempts logged before the circuit opened"
sed -n "$((first + 1))p" "$TEST_TMP/down.lines" | grep -q 'job failed, retrying dest=down ' ||
  fail "the attempt that opened the circuit is not the next one logged: $(cat "$TEST_TMP/down.lines")"
open_line 1 | grep -q "circuit open dest=down failures=$FAILURES " || fail "first open: $(open_line 1)"
assert_eq "$at_open" "$((FAILURES * PER_ATTEMPT))" "requests that reached the down destination when its circuit opened"
assert_eq "$(jq -r .circuit <<<"$status_open")" open "/v1/status circuit of down while open ($status_open)"
assert_eq "$metric_open" 1 "ferry_circuit_open{destination=\"down\"} while open"
pass "the circuit opened after exactly $FAILURES failed attempts ($at_open requests reached the destination); status and metric say open"

# While open nothing reaches the destination for open_for (checked until
# half a second before it ends, counted from the log line's own time), then
# one probe (one attempt) fails and opens it again.
t_open=$(stamp_ms "$(open_line 1)")
quiet_until=$((t_open + OPEN_MS - 500))
now=$(_itest_now_ms)
((now < quiet_until)) || fail "too slow to watch the open period: $((now - t_open)) ms after it opened"
sleep "$(printf '%d.%03d' $(((quiet_until - now) / 1000)) $(((quiet_until - now) % 1000)))"
assert_eq "$(reached)" "$at_open" "requests that reached the down destination in the first $((OPEN_MS - 500)) ms of open_for"
wait_until 20 bash -c "(( \$(grep -c 'circuit open dest=down ' '$LOG') >= 2 ))" ||
  fail "no probe failed within 20 s of the circuit opening: $(grep 'dest=down' "$LOG" | tail -3)"
at_reopen=$(reached)
gap=$(($(stamp_ms "$(open_line 2)") - t_open))
# The engine's loop clock, which times open_for, may be a moment behind the log's.
((gap >= OPEN_MS - 50)) || fail "the probe's failure came $gap ms after the circuit opened (open_for $OPEN_MS ms)"
open_line 2 | grep -q "circuit open dest=down failures=$((FAILURES + 1)) " || fail "second open: $(open_line 2)"
assert_eq "$((at_reopen - at_open))" "$PER_ATTEMPT" "requests of the one probe"
pass "while open nothing reached the destination for open_for; then one probe ($PER_ATTEMPT requests, its failure ${gap} ms after opening)"

# The healthy destination gets a push made while down's circuit is open.
fixturegen push --registry "$src_ADDR" --repo svc --tag t4 --seed circuit-t4 --layers 1 --layer-size 8K --compact >"$TEST_TMP/t4.json"
t4_ms=$(manifest_arrives_within 20000 "http://$up_ADDR" svc t4 "$(jq -r .digest "$TEST_TMP/t4.json")") ||
  fail "svc:t4 did not reach the healthy destination within 20 s while down's circuit was open"
note "figure: svc:t4 at the healthy destination $t4_ms ms after its push (poll_interval 1 s)"
circuit_now=$(down_status | jq -r .circuit)
[[ "$circuit_now" != closed ]] || fail "down's circuit closed while its registry was stopped"
for t in t1 t2 t3; do at "$up_ADDR" "$t" || fail "svc:$t is not at the healthy destination"; done
pass "the healthy destination got every tag, svc:t4 pushed while down's circuit was open ($circuit_now)"

# Every request that reached the destination so far was a failed attempt's
# (logged) or the one probe's in flight: a probe per open period, no more.
for _ in $(seq 1 10); do # a consistent pair: no probe ended while the proxy was asked
  n_opens=$(opens) && n_reached=$(reached)
  [[ "$(opens)" == "$n_opens" ]] && break
done
logged=$(((FAILURES + n_opens - 1) * PER_ATTEMPT))
((n_reached >= logged && n_reached <= logged + PER_ATTEMPT)) ||
  fail "$n_reached requests reached the down destination; $n_opens opens account for $logged (+$PER_ATTEMPT for a probe in flight)"
pass "$n_reached requests reached the down destination: $FAILURES attempts and $((n_opens - 1)) probes (+ one in flight at most)"

# The destination returns: the next probe succeeds, the circuit closes, every tag arrives.
registry_restart far
wait_until 20 bash -c "grep -q 'circuit closed dest=down ' '$LOG'" ||
  fail "the circuit did not close within 20 s of the registry's return: $(grep 'dest=down' "$LOG" | tail -3)"
for t in t1 t2 t3 t4; do
  wait_until 20 at "$far_ADDR" "$t" || fail "svc:$t did not reach the returned destination"
done
wait_until 10 bash -c "$(declare -f down_status); API='$API'; down_status | jq -e '.backlog == 0' >/dev/null" ||
  fail "down's backlog did not drain: $(down_status)"
st=$(down_status)
assert_eq "$(jq -r .circuit <<<"$st")" closed "/v1/status circuit of down once back ($st)"
assert_eq "$(circuit_metric)" 0 "ferry_circuit_open{destination=\"down\"} once back"
assert_eq "$(jq -r '[.failed, .failed_total] | @tsv' <<<"$st")" "0	0" "down's failed and failed_total"
assert_eq "$(jq -r .completed <<<"$st")" 4 "jobs completed at down"
if grep -q 'job failed dest=' "$LOG"; then fail "a job ended FAILED: $(grep 'job failed dest=' "$LOG" | head -3)"; fi
timeout 20 "$FERRY" journal -c "$TEST_TMP/serve.yaml" jobs --json >"$TEST_TMP/jobs.json" || fail "ferry journal jobs failed"
assert_eq "$(jq -s -c '[.[] | select(.destination == "down") | .state] | sort' "$TEST_TMP/jobs.json")" \
  '["COMPLETE","COMPLETE","COMPLETE","COMPLETE"]' "down's jobs in the journal"
pass "the destination back: the circuit closed (status, metric 0), all 4 tags arrived, no job FAILED"
