#!/usr/bin/env bash
# corrupt: the source serves one layer with a byte flipped (the fault proxy,
# on every GET of that blob). Both of the engine's paths are exercised, by
# two daemons: "fan" replicates source s1 to d1 and d2 (blobs go through the
# spool), "one" source s2 to d3 alone (blobs stream through a ring). While
# the corruption lasts every job FAILS with a digest error naming the blob,
# and no destination (nor the spool) ever holds a blob whose bytes do not
# match its digest; once it stops, a retry (POST /v1/retry) completes every
# job and `ferry verify` is clean.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry

layer=8M images=3
if chaos_short; then
  layer=2M images=2
fi
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

figure "corrupt images=$images layer=$layer corrupted_blobs=${#bad[@]} flips_injected=$flips checks_of_every_blob=$checks"
figure "corrupt failed_jobs_while_corrupt=$failed_jobs named_the_blob=$named failed_attempts=$attempts attempts_without_the_digest_error=$unclear requeued=$requeued converged_after_retry=$converged failed_after=$failed_now"
assert_eq "$named" "$n_jobs" "every FAILED job's error is a digest error naming the blob ($(grep -v 'does not match' "$TEST_TMP/failures.txt" | head -n 2))"
assert_eq "$unclear" 0 "every failed attempt's error is the digest error ($(cat "$TEST_TMP/fan.log" "$TEST_TMP/one.log" | grep -a 'job failed' | grep -av 'does not match its digest' | head -n 1 | cat -v))"
((converged)) || fail "no convergence after the corruption stopped: $(head -n 3 "$TEST_TMP/verify.out")"
assert_eq "$failed_now" 0 "nothing FAILED after the retry"
pass "corrupt: every job FAILED naming the blob, none landed, all completed after the retry"
