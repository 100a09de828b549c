#!/usr/bin/env bash
# corrupt: the source serves one layer with a byte flipped (the fault proxy,
# on every GET of that blob). Both of the engine's paths are exercised, by
# two daemons: "fan" replicates source s1 to d1 and d2 (blobs go through the
# spool), "one" source s2 to d3 alone (blobs stream through a ring). While
# the corruption lasts every job FAILS with a digest error naming the blob,
# and no destination (nor the spool) ever holds a blob whose bytes do not
# match its digest; once it stops, a retry (POST /v1/retry) completes every
# job and `ferry verify` is clean.
# What is checked is what Ferry could get wrong, not what Distribution refuses
# anyway: its spool (no file holding other bytes than its name says, and once
# the jobs FAILED no file at all for a corrupted blob), its journal's job
# records (every job FAILED with the digest error naming the blob, none
# COMPLETE), and the destinations' access logs: while the corruption lasted
# Ferry PUT no manifest of these images anywhere (their tag or manifest would
# name a blob that failed). After the retry the same count sees the manifest
# PUTs. (A streamed upload's final PUT ?digest= does start, and is cut before
# its last byte when the digest fails: Distribution logs it, refused.)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry

layer=8M images=3
if chaos_short; then
  layer=2M images=2
fi
chaos_faults "one layer per image served with a flipped byte, through the spool and through the ring"
registry_start s1
registry_start s2
for d in d1 d2 d3; do
  registry_start "$d"
done
proxy_start ps1 "$s1_ADDR"
proxy_start ps2 "$s2_ADDR"
PORT_fan=$(free_port)
PORT_one=$(free_port)
config() { # NAME DATA_DIR SOURCE_ADDR
  echo "data_dir: $2"
  local port_var="PORT_$1"
  echo "listen: 127.0.0.1:${!port_var}"
  cat <<YAML
poll_interval: 1s
retry: { attempts: 3, base: 200ms, max: 1s }
circuit: { failures: 1000, open_for: 1s }
registries:
YAML
  if [[ "$1" == fan ]]; then
    cat <<YAML
  s1: { url: "http://$3" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: fan, source: s1, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
  else
    cat <<YAML
  s2: { url: "http://$3" }
  d3: { url: "http://$d3_ADDR" }
rules:
  - { name: one, source: s2, destinations: [{ registry: d3 }] }
YAML
  fi
}
config fan "$TEST_TMP/fan-data" "$ps1_ADDR" >"$TEST_TMP/fan.yaml"
config one "$TEST_TMP/one-data" "$ps2_ADDR" >"$TEST_TMP/one.yaml"
config fan "$TEST_TMP/fan-verify" "$s1_ADDR" >"$TEST_TMP/fan-verify.yaml"
config one "$TEST_TMP/one-verify" "$s2_ADDR" >"$TEST_TMP/one-verify.yaml"
# api DAEMON PATH : its HTTP API
api() {
  local port_var="PORT_$1"
  curl -sf --max-time 5 "http://127.0.0.1:${!port_var}$2"
}

# The same images on both sources; the first layer of each is corrupted in transit.
bad=()
for ((n = 0; n < images; n++)); do
  for s in s1 s2; do
    addr_var="${s}_ADDR"
    fixturegen push --registry "${!addr_var}" --repo "corrupt/$s-app$n" --tag v1 --seed "corrupt-$n" \
      --layers 2 --layer-size "$layer" --compact >"$TEST_TMP/$s.$n.json"
  done
  bad+=("$(jq -r '[.blobs[] | select(.size > 1000000)][0].digest' "$TEST_TMP/s1.$n.json")")
done
rules=()
for b in "${bad[@]}"; do
  rules+=("GET /blobs/$b flip")
done
proxy_rules ps1 put "${rules[@]}"
proxy_rules ps2 put "${rules[@]}"

# every_blob_sound : each blob a destination stores, and each complete spool
# file, hashes to its name. Prints the first that does not.
every_blob_sound() {
  local f hex d
  for d in d1 d2 d3; do
    local storage_var="${d}_STORAGE"
    while IFS= read -r f; do
      hex=$(basename "$(dirname "$f")")
      [[ "$(sha256sum <"$f" | cut -d' ' -f1)" == "$hex" ]] || {
        echo "$d holds blob $hex with other content"
        return 1
      }
    done < <(find "${!storage_var}/docker/registry/v2/blobs" -name data -type f 2>/dev/null)
  done
  while IFS= read -r f; do
    hex=$(basename "$f")
    [[ "$hex" =~ ^[0-9a-f]{64}$ ]] || continue
    [[ "$(sha256sum <"$f" | cut -d' ' -f1)" == "$hex" ]] || {
      echo "the spool holds $hex with other content"
      return 1
    }
  done < <(find "$TEST_TMP/fan-data/spool" "$TEST_TMP/one-data/spool" -type f 2>/dev/null)
}

ferry_serve_start fan "$TEST_TMP/fan.yaml" "$PORT_fan"
ferry_serve_start one "$TEST_TMP/one.yaml" "$PORT_one"
n_jobs=$((images * 3))
all_failed() {
  local n s failed=0 st daemon
  for ((n = 0; n < images; n++)); do
    for s in s1 s2; do
      daemon=fan
      [[ "$s" == s2 ]] && daemon=one
      st=$(api "$daemon" "/v1/images?repository=corrupt/$s-app$n&tag=v1") || return 1
      failed=$((failed + $(jq '[.destinations[] | select(.state == "FAILED")] | length' <<<"$st")))
    done
  done
  ((failed >= n_jobs))
}
checks=0
sound_during=1
settle() {
  checks=$((checks + 1))
  if ! every_blob_sound >"$TEST_TMP/unsound"; then
    sound_during=0
    return 0
  fi
  all_failed
}
wait_until 120 settle || fail "the jobs did not all FAIL: $(api fan /v1/status | jq -c '[.destinations[] | {name, backlog, failed, completed}]') $(api one /v1/status | jq -c '[.destinations[] | {name, backlog, failed, completed}]')"
((sound_during)) || fail "a corrupt blob landed: $(cat "$TEST_TMP/unsound")"
jq -s '{failures: (map(.failures) | add)}' <(api fan /v1/failures) <(api one /v1/failures) >"$TEST_TMP/failures.json"
failed_jobs=$(jq '.failures | length' "$TEST_TMP/failures.json")
assert_eq "$failed_jobs" "$n_jobs" "every job FAILED while the source is corrupt"
named=0
for b in "${bad[@]}"; do
  named=$((named + $(jq --arg b "$b" '[.failures[] | select((.last_error | contains($b)) and (.last_error | test("digest")))] | length' "$TEST_TMP/failures.json")))
  for d in d1 d2 d3; do
    url_var="${d}_URL"
    for ((n = 0; n < images; n++)); do
      for s in s1 s2; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -I "${!url_var}/v2/corrupt/$s-app$n/blobs/$b")
        assert_eq "$code" 404 "$d never holds the corrupted blob $b"
      done
    done
  done
done
# Every attempt, too, said so (the log has the errors of the attempts before the last).
attempts=$(cat "$TEST_TMP/fan.log" "$TEST_TMP/one.log" | grep -ac 'job failed' || true)
unclear=$(cat "$TEST_TMP/fan.log" "$TEST_TMP/one.log" | grep -a 'job failed' | grep -avc 'does not match its digest' || true)
flips=$(($(proxy_fault_count ps1 flip) + $(proxy_fault_count ps2 flip)))
note "while corrupt: $(jq -r '.failures[0].last_error' "$TEST_TMP/failures.json")"
jq -r '.failures[] | "\(.destination) \(.repository): \(.last_error)"' "$TEST_TMP/failures.json" | cat -v >"$TEST_TMP/failures.txt"

# Ferry's own records: the journal's job states (read-only, while the daemons run).
jobs_of() { # DAEMON STATE
  "$(ferry_bin)" journal -c "$TEST_TMP/$1.yaml" jobs --state "$2" --json | jq -c 'select(.repository | startswith("corrupt/"))'
}
{ jobs_of fan FAILED; jobs_of one FAILED; } >"$TEST_TMP/failed_records.jsonl"
complete_records=$({ jobs_of fan COMPLETE; jobs_of one COMPLETE; } | grep -c . || true)
failed_records=$(grep -c . "$TEST_TMP/failed_records.jsonl" || true)
records_named=0
for b in "${bad[@]}"; do
  records_named=$((records_named + $(jq -s --arg b "$b" '[.[] | select((.last_error // "") | (contains($b) and contains("does not match its digest")))] | length' "$TEST_TMP/failed_records.jsonl")))
done
# The spool, now that nothing runs: no file for a corrupted blob, whole or partial.
spool_bad=0
for b in "${bad[@]}"; do
  # (the ring daemon "one" may have no spool directory at all: find's status is not the point)
  spool_bad=$((spool_bad + $({ find "$TEST_TMP/fan-data/spool" "$TEST_TMP/one-data/spool" -type f -name "*${b#sha256:}*" 2>/dev/null || true; } | wc -l)))
done
# The destinations' access logs while corrupt: manifest PUTs of these images, any status.
manifest_puts_while_corrupt=0
for d in d1 d2 d3; do
  manifest_puts_while_corrupt=$((manifest_puts_while_corrupt + $(registry_count_requests "$d" PUT '/v2/corrupt/.*/manifests/.*')))
done

# The corruption stops; a retry completes everything.
proxy_rules ps1 delete
proxy_rules ps2 delete
for dd in fan:d1 fan:d2 one:d3; do
  port_var="PORT_${dd%%:*}"
  curl -sf -X POST -H 'Content-Type: application/json' -d "{\"destination\": \"${dd#*:}\"}" \
    "http://127.0.0.1:${!port_var}/v1/retry" >>"$TEST_TMP/retry.out" ||
    fail "POST /v1/retry failed for $dd"
done
requeued=$(jq -s '[.[].requeued] | add' "$TEST_TMP/retry.out")
converged=0
chaos_wait_converged "$TEST_TMP/fan-verify.yaml" 90 && chaos_wait_converged "$TEST_TMP/one-verify.yaml" 30 &&
  converged=1
every_blob_sound >"$TEST_TMP/unsound" || fail "after the retry: $(cat "$TEST_TMP/unsound")"
failed_now=$(($(api fan /v1/status | jq '[.destinations[].failed] | add') + $(api one /v1/status | jq '[.destinations[].failed] | add')))
manifest_puts_after=0
for d in d1 d2 d3; do
  manifest_puts_after=$((manifest_puts_after + $(registry_count_requests "$d" PUT '/v2/corrupt/.*/manifests/.*' '2..')))
done

figure "corrupt images=$images layer=$layer corrupted_blobs=${#bad[@]} flips_injected=$flips checks_of_every_blob=$checks"
figure "corrupt failed_jobs_while_corrupt=$failed_jobs named_the_blob=$named failed_attempts=$attempts attempts_without_the_digest_error=$unclear requeued=$requeued converged_after_retry=$converged failed_after=$failed_now"
figure "corrupt journal_job_records_failed=$failed_records naming_the_blob=$records_named complete=$complete_records spool_files_of_corrupt_blobs=$spool_bad manifest_puts_while_corrupt=$manifest_puts_while_corrupt manifest_puts_after_retry=$manifest_puts_after"
assert_eq "$failed_records" "$n_jobs" "the journal holds every job as FAILED while the source is corrupt"
assert_eq "$records_named" "$n_jobs" "every FAILED job record holds the digest error naming the blob ($(jq -r .last_error "$TEST_TMP/failed_records.jsonl" | head -n 1))"
assert_eq "$complete_records" 0 "no job record COMPLETE while the source is corrupt"
assert_eq "$spool_bad" 0 "no spool file left for a corrupted blob once its jobs FAILED"
assert_eq "$manifest_puts_while_corrupt" 0 "no manifest PUT at any destination while the source was corrupt"
assert_eq "$named" "$n_jobs" "every FAILED job's error is a digest error naming the blob ($(grep -v 'does not match' "$TEST_TMP/failures.txt" | head -n 2))"
assert_eq "$unclear" 0 "every failed attempt's error is the digest error ($(cat "$TEST_TMP/fan.log" "$TEST_TMP/one.log" | grep -a 'job failed' | grep -av 'does not match its digest' | head -n 1 | cat -v))"
((converged)) || fail "no convergence after the corruption stopped: $(head -n 3 "$TEST_TMP/verify.out")"
assert_eq "$failed_now" 0 "nothing FAILED after the retry"
((manifest_puts_after >= n_jobs)) || fail "after the retry only $manifest_puts_after manifest PUTs counted for $n_jobs jobs: the count cannot see them"
chaos_row "one layer per image served with a flipped byte ($flips flips), through the spool and through the ring" \
  "**pass**: all $n_jobs jobs FAILED with a digest error naming the blob (in the API and in the journal's job records, none COMPLETE; $((attempts - unclear)) of $attempts attempts said so), no manifest PUT at any destination while the corruption lasted (access logs; $manifest_puts_after after the retry), no spool file left for one, no stored blob or spool file ever held other bytes than its digest; a retry completed all $n_jobs once the corruption stopped"
pass "corrupt: every job FAILED naming the blob, none landed, all completed after the retry"
