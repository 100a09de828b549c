#!/usr/bin/env bash
# flaky: every destination sits behind the fault proxy answering 20% of
# requests with 503, resetting 5% (in the middle of the body where there is
# one) and now and then a burst of 429s with Retry-After. `ferry serve`
# replicates images pushed to the source: everything converges, no job ends
# FAILED, and the retries stay bounded (requests per blob reported).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry
chaos_faults "3 destinations: 20% 503, 5% resets, 429 bursts"

chaos_seed
images=60 layer=1M timeout=300
if chaos_short; then
  images=20 layer=512K timeout=90
fi
figure "flaky seed=$seed images=$images (CHAOS_SEED=$seed reproduces the proxies' draws)"

FERRY_PORT=$(free_port)
registry_start src --notify "http://127.0.0.1:$FERRY_PORT/v1/events/src"
dests=(d1 d2 d3)
i=0
for d in "${dests[@]}"; do
  registry_start "$d"
  addr_var="${d}_ADDR"
  # Rules are tried in order and the first fault drawn wins: 0.0625 of the
  # 80% left after the 503s is 5% of all requests.
  proxy_start "p$d" "${!addr_var}" --seed $((seed + i)) \
    '* * status=503 rate=0.2' '* * reset=mid rate=0.0625'
  i=$((i + 1))
done

config() { # FILE DATA_DIR VIA_PROXY
  local d addr_var
  cat <<YAML
data_dir: $2
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR", poll: false }
YAML
  for d in "${dests[@]}"; do
    if (($3)); then addr_var="p${d}_ADDR"; else addr_var="${d}_ADDR"; fi
    echo "  $d: { url: \"http://${!addr_var}\" }"
  done
  echo "rules:"
  echo "  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2 }, { registry: d3, repository: \"dr/{repo}\" }] }"
}
config x "$TEST_TMP/data" 1 >"$TEST_TMP/ferry.yaml"
# ferry verify reads the destinations directly: the audit must not be faulted.
config x "$TEST_TMP/verify-data" 0 >"$TEST_TMP/verify.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

# Bursts of 429: every 3 s, for one second, the next requests (at most 8)
# that get past the other faults are answered 429 with Retry-After: 1.
cat >"$TEST_TMP/bursts.sh" <<'SH'
stop=$1
shift
end=$((SECONDS + 600))
base='* * status=503 rate=0.2
* * reset=mid rate=0.0625'
put() { for c in "$@"; do curl -s -o /dev/null --max-time 2 -X PUT --data-binary "$rules" "$c/rules" || true; done; }
while [ $SECONDS -lt $end ] && [ ! -e "$stop" ]; do
  sleep 2
  rules="$base
* * status=429 retry_after=1 count=8"
  put "$@"
  sleep 1
  rules=$base
  put "$@"
done
SH
start_bg bursts bash "$TEST_TMP/bursts.sh" "$TEST_TMP/bursts.stop" "$pd1_CONTROL" "$pd2_CONTROL" "$pd3_CONTROL"

start=$SECONDS
: >"$TEST_TMP/blobs.txt"
for ((n = 0; n < images; n++)); do
  fixturegen push --registry "$src_ADDR" --repo "flaky/app$((n % 4))" --tag "v$n" --seed "flaky-$n" \
    --layers 2 --layer-size "$layer" --base-seed flaky-base --base-layers 1 --compact >"$TEST_TMP/img$n.json"
  jq -r '.blobs[].digest' "$TEST_TMP/img$n.json" >>"$TEST_TMP/blobs.txt"
done
unique_blobs=$(sort -u "$TEST_TMP/blobs.txt" | wc -l)

converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" "$timeout" && converged=1
touch "$TEST_TMP/bursts.stop"
elapsed=$((SECONDS - start))
wait_until 30 chaos_idle || note "backlog not empty: $(chaos_api /v1/status | jq -c '[.destinations[] | {name, backlog}]')"

requests=0 faults=0 status=0 resets=0 n429=0
for d in "${dests[@]}"; do
  s=$(proxy_stats "p$d")
  requests=$((requests + $(jq .requests <<<"$s")))
  faults=$((faults + $(jq .faults_total <<<"$s")))
  status=$((status + $(jq '.status_injected["503"] // 0' <<<"$s")))
  n429=$((n429 + $(jq '.status_injected["429"] // 0' <<<"$s")))
  resets=$((resets + $(jq '.faults.reset_mid + .faults.reset_before' <<<"$s")))
done
st=$(chaos_api /v1/status)
failed_total=$(jq '[.destinations[].failed_total] | add' <<<"$st")
retries=$(jq '[.destinations[].retries] | add' <<<"$st")
failures=$(chaos_api /v1/failures | jq '.failures | length')
per_blob=$(awk -v r="$requests" -v b="$unique_blobs" -v d="${#dests[@]}" 'BEGIN { printf "%.2f", r / (b * d) }')

figure "flaky images=$images unique_blobs=$unique_blobs destinations=${#dests[@]} converged=$converged seconds=$elapsed"
figure "flaky faults_injected=$faults (503=$status 429=$n429 resets=$resets) destination_requests=$requests"
figure "flaky requests_per_blob_per_destination=$per_blob job_retries=$retries failed_jobs=$failed_total"

((converged)) || fail "the destinations did not converge in $timeout s: $(head -n 3 "$TEST_TMP/verify.out")"
assert_eq "$failed_total" 0 "no job FAILED under flaky faults ($(chaos_api /v1/failures | jq -c '.failures[:3]'))"
assert_eq "$failures" 0 "no failure listed"
((faults > 0)) || fail "no fault was injected: the scenario proved nothing"
# Bounded retries: with a quarter of the requests failing, about 1.4 tries per
# request on average; far more than 3x the fault-free count would mean retry storms.
awk -v p="$per_blob" 'BEGIN { exit !(p <= 20) }' || fail "requests per blob per destination $per_blob: retries unbounded"
chaos_row "${#dests[@]} destinations: 20% 503, 5% resets, 429 bursts; $(chaos_num "$faults") faults ($(chaos_num "$status") × 503, $(chaos_num "$n429") × 429, $(chaos_num "$resets") resets) in $(chaos_num "$requests") requests" \
  "**pass**: $images images ($unique_blobs blobs) converged in $elapsed s, no FAILED job, $retries job retries, $per_blob requests per blob per destination (bound 20)"
pass "flaky: converged with no FAILED job; $faults faults injected, $per_blob requests per blob per destination"
