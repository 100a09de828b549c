#!/usr/bin/env bash
# A password_file rotated on disk: each password the token issuer accepts is
# valid 4 s (--password-dir), each access token 2 s (--hard-expiry), and a
# sidecar writes a new password into the file every 3 s (a temporary file,
# then mv). `ferry serve` keeps replicating five pushes spread over 20 s with
# no FAILED job and no SIGHUP: it reads the file again when it changes, or
# on a 401. Passwords from the second half of the run were used, /v1/status
# says the credentials come from the password_file, and no password shows in
# the status or the log.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry

token_issuer_start --password-dir "$TEST_TMP/passwords" --expires 2 --hard-expiry
registry_start src
registry_start dst --token
# The fixture helper mints the passwords (and lists them in rotor/secrets).
credhelper_install "$TEST_TMP/bin"
PWFILE=$TEST_TMP/secret/dst-password
mkdir -p "$TEST_TMP/secret" "$TEST_TMP/rotor"
chmod 700 "$TEST_TMP/secret"
: >"$TEST_TMP/rotor/secrets"
cat >"$TEST_TMP/rotate.sh" <<'SH'
# rotate.sh FILE : every 3 s, a new password valid 4 s, put in FILE atomically.
set -euo pipefail
umask 077
fifo=$(mktemp -u "$FILE_DIR/.tick.XXXXXX")
mkfifo "$fifo"
exec 3<>"$fifo" # a read that times out: a sleep with no child to outlive us
rm -f "$fifo"
while :; do
  pw=$(echo rotate | docker-credential-ferrytest get | jq -r .Secret)
  printf '%s\n' "$pw" >"$1.tmp"
  mv -f "$1.tmp" "$1"
  read -r -t 3 -u 3 _ || true
done
SH
start_bg rotator env PATH="$TEST_TMP/bin:$PATH" FILE_DIR="$TEST_TMP/secret" FERRYTEST_MODE=password \
  FERRYTEST_USER=rotor FERRYTEST_TTL=4 FERRYTEST_HELPER_DIR="$TEST_TMP/rotor" \
  FERRYTEST_PASSWORD_DIR="$TOKEN_PASSWORD_DIR" bash "$TEST_TMP/rotate.sh" "$PWFILE"
wait_until 10 test -s "$PWFILE" || fail "the rotator wrote no password: $(cat "$TEST_TMP/rotator.log")"
first_expires=$(($(date +%s) + 4))

API_TOKEN=api-tok-$RANDOM$RANDOM
port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
api_token: $API_TOKEN
poll_interval: 1s
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR", username: rotor, password_file: "$PWFILE" }
rules:
  - { name: all, source: src, repositories: ["**"], destinations: [{ registry: dst }] }
YAML
chmod 600 "$TEST_TMP/ferry.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
API="http://127.0.0.1:$port"
api() { curl -sS --max-time 10 -H "Authorization: Bearer $API_TOKEN" "$@"; }
complete() {
  api "$API/v1/images?repository=app&tag=$1" 2>/dev/null |
    jq -e '.destinations[] | select(.name == "dst") | .state == "COMPLETE"' >/dev/null 2>&1
}
failed_jobs() { api "$API/v1/status" | jq '.destinations[] | select(.name == "dst") | .failed'; }

# Five pushes, 4 s apart: each after the password Ferry last used expired.
t_start=$(_itest_now_ms)
for i in $(seq 1 5); do
  fixturegen push --registry "$src_ADDR" --repo app --tag "r$i" --seed "rot$i" --layers 1 --layer-size 4K \
    --compact >"$TEST_TMP/r$i.json"
  wait_until 10 complete "r$i" ||
    fail "app:r$i did not arrive within 10 s: $(api "$API/v1/images?repository=app&tag=r$i")"
  assert_eq "$(failed_jobs)" 0 "FAILED jobs at dst after push $i"
  left=$((t_start + 4000 * i - $(_itest_now_ms)))
  if ((i < 5 && left > 0)); then sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"; fi
done
for i in $(seq 1 5); do
  assert_eq "$(token_manifest_digest dst app "r$i")" "$(jq -r .digest "$TEST_TMP/r$i.json")" "app:r$i at dst"
done
assert_eq "$(api "$API/v1/failures" | jq '.failures | length')" 0 "no failure listed"
_itest_alive "$ferry_PID" || fail "ferry serve is gone"
if grep -qi 'reload' "$TEST_TMP/ferry.log"; then fail "ferry serve reloaded: $(grep -i -m 1 reload "$TEST_TMP/ferry.log")"; fi
# Ferry's token requests as rotor succeeded long after the first password expired.
late=$(jq -s --argjson t "$((first_expires + 6))" \
  '[.[] | select(.user == "rotor" and .status == 200 and .time > $t)] | length' "$TOKEN_LOG")
((late > 0)) || fail "no token was issued to rotor after the first passwords expired: $(jq -c '[.time, .user, .status, .reason]' "$TOKEN_LOG" | tail -n 8)"
rotations=$(wc -l <"$TEST_TMP/rotor/secrets")
refused=$(jq -s '[.[] | select(.user == "rotor" and .status == 401)] | length' "$TOKEN_LOG")
pass "5 pushes over 20 s replicated while the password_file rotated $rotations times, no FAILED job, no SIGHUP ($late late tokens, $refused refused)"

api "$API/v1/status" >"$TEST_TMP/status.json"
creds=$(jq -c '(.registries // [])[] | select(.name == "dst") | .credentials' "$TEST_TMP/status.json")
[[ -n "$creds" && "$creds" != null ]] || fail "/v1/status has no credentials for dst: $(cat "$TEST_TMP/status.json")"
jq -e --arg f "$PWFILE" '.source | test("password_file") or contains($f)' <<<"$creds" >/dev/null ||
  fail "dst's credential source does not name the password_file: $creds"
jq -e '.last_error == null' <<<"$creds" >/dev/null || fail "dst's credentials have an error: $creds"
while read -r secret; do
  if grep -qF -- "$secret" "$TEST_TMP/status.json" "$TEST_TMP/ferry.log"; then fail "a password is printed"; fi
done <"$TEST_TMP/rotor/secrets"
pass "/v1/status: $(jq -c '{source, renewals}' <<<"$creds"), no password in the status or the log"
