#!/usr/bin/env bash
# SIGHUP keeps what the daemon knows. Rules: `app` -> dst1 (a real registry),
# `gone/*` -> dst2 (a port where nothing listens, so its job keeps retrying).
# Three app images replicate (dst1 completed = 3), gone/x:v1 retries at dst2;
# then the config is rewritten without the `gone/*` rule (dst2 stays a
# destination of a rule that selects nothing pushed here) and SIGHUP reloads
# it. After the reload /v1/status and /metrics still count dst1's completions
# and dst2's retries (not reset to 0), the app jobs' records are still
# COMPLETE, and the gone/x job, which no rule selects now, ends SUPERSEDED
# with last_error saying "no rule selects" (not PENDING forever, not vanished).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

registry_start src
registry_start dst1
down_port=$(free_port)
port=$(free_port)
API="http://127.0.0.1:$port"
write_config() { # RULE_LINE_FOR_DST2
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 500ms
retry: { attempts: 20, base: 1s, max: 3s }
circuit: { failures: 1000, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  dst1: { url: "http://$dst1_ADDR" }
  dst2: { url: "http://127.0.0.1:$down_port" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: dst1 }] }
$1
YAML
}
write_config '  - { name: gone, source: src, repositories: ["gone/*"], destinations: [{ registry: dst2 }] }'

# The job status records, read-only while serve runs (or after it stopped).
jobs() { timeout 20 "$(ferry_bin)" journal -c "$TEST_TMP/ferry.yaml" jobs --json; }

ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
st() { curl -sf --max-time 5 "$API/v1/status"; }
dest() { # NAME FIELD
  st | jq -r --arg n "$1" ".destinations[] | select(.name == \$n) | .$2"
}
metric() { # NAME{LABELS}
  curl -sf --max-time 5 "$API/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

N=3
for i in $(seq 1 $N); do
  fixturegen push --registry "$src_ADDR" --repo app --tag "v$i" --seed "keep$i" --layers 1 --layer-size 16K --compact >"$TEST_TMP/app$i.json"
done
completed_ge() { (($(dest dst1 completed || echo 0) >= $1)); }
wait_until 30 completed_ge $N || fail "dst1 completed $(dest dst1 completed) of $N app images: $(st)"
for i in $(seq 1 $N); do
  assert_eq "$(skopeo_raw "$dst1_ADDR/app:v$i" | digest_of)" "$(jq -r .digest "$TEST_TMP/app$i.json")" "app:v$i at dst1"
done

fixturegen push --registry "$src_ADDR" --repo gone/x --tag v1 --seed keepgone --layers 1 --layer-size 16K --compact >"$TEST_TMP/gone.json"
gone_digest=$(jq -r .digest "$TEST_TMP/gone.json")
retries_ge() { (($(dest dst2 retries || echo 0) >= $1)); }
wait_until 30 retries_ge 2 || fail "the gone/x job did not retry at dst2: $(st)"
gone_job() { jobs | jq -c --arg d "$gone_digest" 'select(.destination == "dst2" and .repository == "gone/x" and .digest == $d)'; }
before_job=$(gone_job)
[[ -n "$before_job" ]] || fail "no job record for gone/x at dst2: $(jobs)"
note "before the reload: gone/x job $before_job"

completed_before=$(dest dst1 completed)
retries_before=$(dest dst2 retries)
metric_complete_before=$(metric 'ferry_jobs{destination="dst1",state="complete"}')
metric_retries_before=$(metric 'ferry_retries_total{destination="dst2"}')
note "before the reload: dst1 completed=$completed_before (metric $metric_complete_before), dst2 retries=$retries_before (metric $metric_retries_before)"
((completed_before >= N)) || fail "dst1 completed $completed_before before the reload"
((metric_complete_before >= N)) || fail "ferry_jobs{dst1,complete} $metric_complete_before before the reload"

# The new config: no rule selects gone/*; dst2 stays a destination (keep/**).
write_config '  - { name: keep, source: src, repositories: ["keep/**"], destinations: [{ registry: dst2 }] }'
reloads_before=$(grep -ac 'reloaded config=' "$TEST_TMP/ferry.log" || true)
kill -HUP "$ferry_PID"
reloaded() { (($(grep -ac 'reloaded config=' "$TEST_TMP/ferry.log" || true) > reloads_before)); }
wait_until 30 reloaded || fail "no reload within 30 s: $(tail -n 5 "$TEST_TMP/ferry.log")"
wait_until 10 st >/dev/null || fail "/v1/status does not answer after the reload"
sleep 1 # let the new engine read its backlog

completed_after=$(dest dst1 completed)
retries_after=$(dest dst2 retries)
metric_complete_after=$(metric 'ferry_jobs{destination="dst1",state="complete"}')
metric_retries_after=$(metric 'ferry_retries_total{destination="dst2"}')
note "after the reload: dst1 completed=$completed_after (metric $metric_complete_after), dst2 retries=$retries_after (metric $metric_retries_after)"
note "after the reload: gone/x job $(gone_job)"
((completed_after >= completed_before)) ||
  fail "/v1/status dst1 completed went from $completed_before to $completed_after across the reload"
((metric_complete_after >= metric_complete_before)) ||
  fail "ferry_jobs{destination=\"dst1\",state=\"complete\"} went from $metric_complete_before to $metric_complete_after across the reload"
[[ -n "$retries_after" && "$retries_after" != null ]] || fail "dst2 is missing from /v1/status after the reload: $(st)"
((retries_after >= retries_before)) ||
  fail "/v1/status dst2 retries went from $retries_before to $retries_after across the reload"
((metric_retries_after >= metric_retries_before)) ||
  fail "ferry_retries_total{destination=\"dst2\"} went from $metric_retries_before to $metric_retries_after across the reload"
pass "the reload keeps the per-destination counters (completed $completed_after >= $completed_before, retries $retries_after >= $retries_before)"

for i in $(seq 1 $N); do
  d=$(jq -r .digest "$TEST_TMP/app$i.json")
  assert_eq "$(jobs | jq -r --arg d "$d" 'select(.destination == "dst1" and .repository == "app" and .digest == $d) | .state')" \
    COMPLETE "app:v$i's job record after the reload"
done
pass "the app jobs' records are still COMPLETE"

gone_superseded() { gone_job | jq -e '.state == "SUPERSEDED" and (.last_error | contains("no rule selects"))' >/dev/null; }
wait_until 15 gone_superseded ||
  fail "the gone/x job (no rule selects it now) is not SUPERSEDED with 'no rule selects' 15 s after the reload: $(gone_job || true)"
# It stays so, and nothing more is tried at dst2 for it.
sleep 3
gone_superseded || fail "the gone/x job did not stay SUPERSEDED: $(gone_job)"
pass "the job no rule selects any more ended SUPERSEDED: $(gone_job | jq -r .last_error)"

kill -TERM "$ferry_PID"
wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not exit on SIGTERM"
