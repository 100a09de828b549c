#!/usr/bin/env bash
# ferry serve under a service manager: READY=1 through sd_notify once it
# serves; SIGHUP reloads rules and registries without losing the transfer in
# flight (a big image being copied when the signal comes still lands, and
# nothing FAILS); a config that does not load is refused and the old one
# keeps working; SIGTERM drains and exits 0.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start d1
registry_start d2
port=$(free_port)
write_config() { # EXTRA_RULE_LINE
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 500ms
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR", rate_limit: 4M }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: a, source: src, repositories: ["a/**"], destinations: [{ registry: d1 }] }
$1
YAML
}
write_config ""

# A notify socket, as systemd gives one (python listens on a datagram socket).
sock="$TEST_TMP/notify.sock"
python3 - "$sock" "$TEST_TMP/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)
with open(sys.argv[2], "a", buffering=1) as out:
    try:
        while True:
            out.write(s.recv(4096).decode() + "\n")
    except socket.timeout:
        pass
PY
_itest_track "bg:notify" $! "$TEST_TMP/notify.log"
wait_until 5 test -S "$sock" || fail "no notify socket"
NOTIFY_SOCKET=$sock ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
wait_until 5 grep -q 'READY=1' "$TEST_TMP/notify.log" || fail "no READY=1: $(cat "$TEST_TMP/notify.log")"
pass "READY=1 through sd_notify once serving"

# A big image towards d1 (4 MiB/s limit: ~3 s of transfer), then SIGHUP while it moves.
fixturegen push --registry "$src_ADDR" --repo a/big --tag v1 --seed 41 --layers 1 --layer-size 12M --compact >"$TEST_TMP/big.json"
wait_until 15 bash -c "curl -s http://127.0.0.1:$port/v1/status | jq -e '.destinations[0].in_flight >= 1' >/dev/null" ||
  fail "the big image never started"
write_config '  - { name: b, source: src, repositories: ["b/**"], destinations: [{ registry: d2 }] }'
kill -HUP "$ferry_PID"
wait_until 30 grep -q 'reloaded config=' "$TEST_TMP/ferry.log" || fail "no reload: $(tail -5 "$TEST_TMP/ferry.log")"
assert_eq "$(skopeo_raw "$d1_ADDR/a/big:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/big.json")" "the image in flight landed"
grep -c 'READY=1' "$TEST_TMP/notify.log" | grep -q '^2$' || fail "no second READY=1 after the reload: $(cat "$TEST_TMP/notify.log")"
grep -q 'RELOADING=1' "$TEST_TMP/notify.log" || fail "no RELOADING=1"
# The new rule works.
fixturegen push --registry "$src_ADDR" --repo b/app --tag v1 --seed 42 --layers 1 --layer-size 10K --compact >"$TEST_TMP/b.json"
wait_until 20 bash -c "curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' $d2_URL/v2/b/app/manifests/v1" ||
  fail "the reloaded rule did not replicate b/app"
if grep 'job failed' "$TEST_TMP/ferry.log" | grep -qv retrying; then
  fail "a job FAILED across the reload: $(grep 'job failed' "$TEST_TMP/ferry.log" | head -1)"
fi
pass "SIGHUP reloads rules without losing the transfer in flight"

# A broken config is refused; the running one keeps replicating.
echo "rules: [ {name: x, source: nowhere" >"$TEST_TMP/ferry.yaml"
kill -HUP "$ferry_PID"
wait_until 10 grep -q 'reload refused' "$TEST_TMP/ferry.log" || fail "a broken config was not refused"
fixturegen push --registry "$src_ADDR" --repo a/after --tag v1 --seed 43 --layers 1 --layer-size 10K --compact >/dev/null
wait_until 20 bash -c "curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' $d1_URL/v2/a/after/manifests/v1" ||
  fail "replication stopped after a refused reload"
pass "a config that does not load is refused; the old one keeps working"

kill -TERM "$ferry_PID"
rc=0
wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not exit on SIGTERM"
wait "$ferry_PID" 2>/dev/null || rc=$?
assert_eq "$rc" 0 "exit status after SIGTERM"
grep -q 'STOPPING=1' "$TEST_TMP/notify.log" || fail "no STOPPING=1"
pass "SIGTERM drains and exits 0"
