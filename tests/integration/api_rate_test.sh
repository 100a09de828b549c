#!/usr/bin/env bash
# The throughput the API reports (bytes_per_second, the 15-minute series the
# dashboard draws) counts bytes as they pass, not when a job ends: during one
# long upload to a destination held to 1 MiB/s by rate_limit, the rate is
# already above zero while the job is still in flight, and it stays near the
# limit rather than jumping to the whole layer in one sample.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

registry_start src
registry_start d1
port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR", rate_limit: 1MiB }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }] }
YAML
fixturegen push --registry "$src_ADDR" --repo rate/app --tag v1 --seed rate --layers 1 --layer-size 24M --compact >/dev/null
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

status() { curl -sf --max-time 5 "http://127.0.0.1:$port/v1/status" | jq -c '.destinations[] | select(.name == "d1")'; }
# A sample (every 10 s) taken while the upload runs.
rate_while_running() {
  local st
  st=$(status) || return 1
  jq -e '.in_flight == 1 and .bytes_per_second > 0' <<<"$st" >/dev/null && echo "$st" >"$TEST_TMP/seen.json"
}
wait_until 22 rate_while_running ||
  fail "no throughput reported while the upload ran: $(status)"
rate=$(jq -r .bytes_per_second "$TEST_TMP/seen.json")
note "bytes_per_second while in flight: $rate"
# The limit is 1 MiB/s: a true rate is below 1.5 MiB/s; a rate counted at the
# end of the job would be the whole 24 MiB over one 10 s sample (2.4 MiB/s).
awk -v r="$rate" 'BEGIN { exit !(r > 100000 && r < 1.5 * 1048576) }' ||
  fail "bytes_per_second $rate while held to 1 MiB/s"
jq -e '[.throughput[] | .[1]] | any(. > 0)' <<<"$(status)" >/dev/null || fail "the throughput series shows nothing"
pass "throughput counts bytes as they pass ($rate B/s at a 1 MiB/s limit, while in flight)"
