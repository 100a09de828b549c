#!/usr/bin/env bash
# Secrets and TLS under the daemon: a destination over HTTPS with Basic auth
# and a client certificate is refused without ca_file and works with it; the
# webhook and API tokens are enforced; and no password or token — right or
# wrong — appears in anything Ferry wrote or answered during the run (logs,
# sync and status output, every API response, the metrics). A config file
# with an inline secret that others can read gets a warning; at 0600 none.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

pki=$TEST_TMP/pki
test_pki "$pki"

D1_PASS=d1-pass-$RANDOM$RANDOM
WRONG_PASS=wrong-pass-$RANDOM$RANDOM
HOOK_TOKEN=hook-tok-$RANDOM$RANDOM
API_TOKEN=api-tok-$RANDOM$RANDOM
SECRETS=("$D1_PASS" "$WRONG_PASS" "$HOOK_TOKEN" "$API_TOKEN")
port=$(free_port)
registry_start src --notify "http://127.0.0.1:$port/v1/events/src" --notify-token "$HOOK_TOKEN"
registry_start d1 --htpasswd "mirror:$D1_PASS" --tls "$pki/server.pem" "$pki/server.key" \
  --client-ca "$pki/ca.pem" "$pki/client.pem" "$pki/client.key"
registry_start d2 --htpasswd "mirror:$D1_PASS"
export D1_PASS WRONG_PASS HOOK_TOKEN API_TOKEN

config() { # FILE WITH_CA(0|1)
  {
    echo "data_dir: $TEST_TMP/data-$2"
    echo "listen: 127.0.0.1:$port"
    echo "webhook_token_env: HOOK_TOKEN"
    echo "api_token_env: API_TOKEN"
    echo "poll_interval: 0"
    echo "retry: { attempts: 2, base: 100ms, max: 200ms }"
    # The wrong-password destination fails every job: keep its circuit from
    # opening (30 s by default), which would hold back the failure --wait awaits.
    echo "circuit: { failures: 100, open_for: 1s }"
    echo "registries:"
    echo "  src: { url: \"http://$src_ADDR\" }"
    echo "  d1:"
    echo "    url: \"https://$d1_ADDR\""
    echo "    username: mirror"
    echo "    password_env: D1_PASS"
    echo "    cert_file: $pki/client.pem"
    echo "    key_file: $pki/client.key"
    if (($2)); then echo "    ca_file: $pki/ca.pem"; fi
    echo "  d2: { url: \"http://$d2_ADDR\", username: mirror, password_env: WRONG_PASS }"
    echo "rules:"
    echo "  - { name: r, source: src, repositories: [\"**\"], destinations: [{ registry: d1 }, { registry: d2 }] }"
  } >"$1"
  chmod 600 "$1"
}

fixturegen push --registry "$src_ADDR" --repo sec/app --tag v1 --seed 51 --layers 1 --layer-size 20K --compact >"$TEST_TMP/app.json"
digest=$(jq -r .digest "$TEST_TMP/app.json")

# Without ca_file the HTTPS destination is refused (verification is on by default).
config "$TEST_TMP/noca.yaml" 0
"$FERRY" sync -c "$TEST_TMP/noca.yaml" >"$TEST_TMP/noca.out" 2>"$TEST_TMP/noca.err" && rc=0 || rc=$?
assert_eq "$rc" 1 "sync without ca_file fails"
grep -E '^FAILED.*d1' "$TEST_TMP/noca.err" | grep -qiE 'TLS|certificate' || fail "no TLS error for d1: $(grep -i d1 "$TEST_TMP/noca.err" | head -3)"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
  -u "mirror:$D1_PASS" "https://$d1_ADDR/v2/sec/app/manifests/v1")
assert_eq "$code" 404 "nothing reached d1 without ca_file"
pass "TLS verification on by default: a destination with an unknown CA is refused"

# With ca_file, under ferry serve: d1 COMPLETE over mutual TLS with Basic auth; d2 FAILED (wrong password).
config "$TEST_TMP/ferry.yaml" 1
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
API="http://127.0.0.1:$port"
fixturegen push --registry "$src_ADDR" --repo sec/app --tag v2 --seed 52 --layers 1 --layer-size 20K --compact >"$TEST_TMP/app2.json"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --wait --image "sec/app:v2" --dest d1 --timeout 30 >"$TEST_TMP/wait.out" 2>&1 ||
  fail "d1 never COMPLETE over TLS: $(cat "$TEST_TMP/wait.out")"
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --wait --image "sec/app:v2" --dest d2 --timeout 30 >"$TEST_TMP/wait2.out" 2>&1 && rc=0 || rc=$?
assert_eq "$rc" 1 "d2 with a wrong password FAILED"
grep -qiE 'auth|401|denied|unauthorized' "$TEST_TMP/wait2.out" || fail "d2's error does not say auth: $(cat "$TEST_TMP/wait2.out")"
pass "ca_file and client certificates under the daemon; a wrong password fails with an auth error"

# The webhook refuses a wrong token; the API refuses no token.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $HOOK_TOKEN-x" \
  -H 'Content-Type: application/json' -d '{"events":[]}' "$API/v1/events/src")
assert_eq "$code" 401 "webhook with a wrong token"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API/v1/status")" 401 "API without token"

# Everything Ferry said during the run.
out="$TEST_TMP/said"
mkdir -p "$out"
for p in /v1/status /v1/failures "/v1/images?repository=sec/app&tag=v2" "/v1/journal?after=0&limit=100" /metrics /readyz /healthz; do
  curl -s -H "Authorization: Bearer $API_TOKEN" "$API$p" >"$out/$(printf '%s' "$p" | tr -c 'a-z0-9' _)"
done
"$FERRY" status -c "$TEST_TMP/ferry.yaml" >"$out/status.out" 2>&1 || true
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --json >"$out/status.json" 2>&1 || true
"$FERRY" status -c "$TEST_TMP/ferry.yaml" --image sec/app:v2 >"$out/image.out" 2>&1 || true
"$FERRY" verify -c "$TEST_TMP/ferry.yaml" >"$out/verify.out" 2>&1 || true
"$FERRY" journal -c "$TEST_TMP/ferry.yaml" ls --json >"$out/journal.json" 2>&1 || true
jq -e '.failures | length >= 1' "$out/_v1_failures" >/dev/null || fail "the failure is not listed: $(cat "$out/_v1_failures")"
kill -TERM "$ferry_PID"
wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not stop"
for s in "${SECRETS[@]}"; do
  if grep -rlF -- "$s" "$out" "$TEST_TMP/ferry.log" "$TEST_TMP"/*.out "$TEST_TMP"/*.err 2>/dev/null; then
    fail "a secret (${s%%-*}) appears in the files above"
  fi
done
n=$(find "$out" -type f | wc -l)
pass "no password or token in the log, the sync and status output or $n API answers"

# An inline secret in a file others can read is warned about; at 0600 it is not.
sed "s|password_env: D1_PASS|password: \"$D1_PASS\"|" "$TEST_TMP/ferry.yaml" >"$TEST_TMP/inline.yaml"
chmod 644 "$TEST_TMP/inline.yaml"
"$FERRY" serve --check-config -c "$TEST_TMP/inline.yaml" 2>"$TEST_TMP/inline.err" || fail "inline config refused: $(cat "$TEST_TMP/inline.err")"
grep -q 'readable by group or others' "$TEST_TMP/inline.err" || fail "no warning for a readable inline secret: $(cat "$TEST_TMP/inline.err")"
chmod 600 "$TEST_TMP/inline.yaml"
"$FERRY" serve --check-config -c "$TEST_TMP/inline.yaml" 2>"$TEST_TMP/inline2.err"
if grep -q 'readable' "$TEST_TMP/inline2.err"; then fail "warned at 0600"; fi
if grep -qF "$D1_PASS" "$TEST_TMP/inline.err" "$TEST_TMP/inline2.err"; then fail "the inline password was printed"; fi
pass "an inline secret readable by others is warned about, never printed"
