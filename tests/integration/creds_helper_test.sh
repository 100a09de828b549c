#!/usr/bin/env bash
# Credentials from a Docker credential helper, and they expire: `ferry serve`
# replicates to a token registry whose password comes from
# `credential_helper: ferrytest` (tests/fixtures/docker-credential-ferrytest),
# each secret valid 2 s, each access token 2 s (--hard-expiry). A new tag
# every 3.5 s (announced by a webhook, so that Ferry uses its credentials
# 3.5 s apart too, not at the poller's next tick), ten in a row, all arrive with no FAILED job: Ferry runs the
# helper again when what it had expired (>= 10 calls). /v1/status says where
# dst's credentials come from and that they were renewed, and no secret the
# helper minted shows in the status or the log. Then `ferry copy --authfile`
# with a config.json naming the helper in credHelpers, and in credsStore.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

token_issuer_start --password-dir "$TEST_TMP/passwords" --expires 2 --hard-expiry
registry_start src
registry_start dst --token
credhelper_install "$TEST_TMP/bin"
export PATH="$TEST_TMP/bin:$PATH"
export FERRYTEST_HELPER_DIR="$TEST_TMP/helper" FERRYTEST_PASSWORD_DIR="$TOKEN_PASSWORD_DIR" FERRYTEST_TTL=2
mkdir -p "$FERRYTEST_HELPER_DIR"
: >"$FERRYTEST_HELPER_DIR/calls"
: >"$FERRYTEST_HELPER_DIR/secrets"
calls() { wc -l <"$FERRYTEST_HELPER_DIR/calls"; }

API_TOKEN=api-tok-$RANDOM$RANDOM
HOOK_TOKEN=hook-tok-$RANDOM$RANDOM
export FERRY_WEBHOOK_TOKEN=$HOOK_TOKEN
port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
api_token: $API_TOKEN
webhook_token_env: FERRY_WEBHOOK_TOKEN
poll_interval: 1s
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR", credential_helper: ferrytest, command_timeout: 5s }
rules:
  - { name: all, source: src, repositories: ["**"], destinations: [{ registry: dst }] }
YAML
chmod 600 "$TEST_TMP/ferry.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
API="http://127.0.0.1:$port"
api() { curl -sS --max-time 10 -H "Authorization: Bearer $API_TOKEN" "$@"; }

# complete TAG : app:TAG is COMPLETE at dst, as the daemon says
complete() {
  api "$API/v1/images?repository=app&tag=$1" 2>/dev/null |
    jq -e '.destinations[] | select(.name == "dst") | .state == "COMPLETE"' >/dev/null 2>&1
}
# failed_jobs : FAILED jobs at dst so far
failed_jobs() { api "$API/v1/status" | jq '.destinations[] | select(.name == "dst") | .failed'; }

# Ten tags, one every 3.5 s (and never sooner than 2.5 s after the last
# arrived): by each push, the last secret and the last
# access token have expired. (Ferry's uses of the secret are ~3.2 s apart:
# the helper takes ~0.3 s of each cycle; a TTL of 3 s would leave no margin.)
for i in $(seq 1 10); do
  t0=$(_itest_now_ms)
  fixturegen push --registry "$src_ADDR" --repo app --tag "t$i" --seed "h$i" --layers 1 --layer-size 4K \
    --compact >"$TEST_TMP/t$i.json"
  event_post "$API" "$HOOK_TOKEN" "ev$i" push app "$(jq -r .digest "$TEST_TMP/t$i.json")" "t$i"
  wait_until 10 complete "t$i" ||
    fail "app:t$i did not arrive within 10 s ($(calls) helper calls): $(api "$API/v1/images?repository=app&tag=t$i")"
  assert_eq "$(failed_jobs)" 0 "FAILED jobs at dst after push $i"
  # The next use must come after the secret just used has expired: at least
  # 2.5 s after this copy completed (a slow cycle, as under ASan on a busy
  # machine, once left the next push under the 2 s lifetime, so one secret
  # served two pushes and the helper ran 9 times).
  left=$((3500 - ($(_itest_now_ms) - t0)))
  ((left >= 2500)) || left=2500
  sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
done
for i in $(seq 1 10); do
  assert_eq "$(token_manifest_digest dst app "t$i")" "$(jq -r .digest "$TEST_TMP/t$i.json")" "app:t$i at dst"
done
assert_eq "$(api "$API/v1/failures" | jq '.failures | length')" 0 "no failure listed"
n=$(calls)
((n >= 10)) || fail "the helper ran $n times for 10 pushes 3.5 s apart with secrets valid 2 s"
grep -qF "$dst_ADDR" "$FERRYTEST_HELPER_DIR/calls" ||
  fail "the helper was never asked for $dst_ADDR: $(head -n 3 "$FERRYTEST_HELPER_DIR/calls")"
expired=$(jq -s '[.[] | select(.status == 401 and .reason == "expired")] | length' "$TOKEN_LOG")
pass "10 pushes 3.5 s apart replicated with expiring helper credentials, no FAILED job ($n helper calls, $expired expired secrets refused)"

st=$(api "$API/v1/status")
creds=$(jq -c '(.registries // [])[] | select(.name == "dst") | .credentials' <<<"$st")
[[ -n "$creds" && "$creds" != null ]] || fail "/v1/status has no credentials for dst: $st"
jq -e '.source | test("ferrytest|helper")' <<<"$creds" >/dev/null || fail "dst's credential source: $creds"
jq -e '.renewals > 0 and .renewed_at != null and .last_error == null' <<<"$creds" >/dev/null ||
  fail "dst's credentials were not renewed: $creds"
jq -e '.renewed_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)$")' <<<"$creds" >/dev/null ||
  fail "renewed_at is not RFC 3339: $creds"
api "$API/v1/status" >"$TEST_TMP/status.json"
api "$API/v1/images?repository=app&tag=t10" >"$TEST_TMP/images.json"
# no_secret WHAT FILE... : no secret the helper minted is in FILE
no_secret() {
  local what=$1 secret
  shift
  while read -r secret; do
    if grep -qF -- "$secret" "$@"; then fail "$what: a secret from the helper is printed"; fi
  done <"$FERRYTEST_HELPER_DIR/secrets"
}
no_secret "status and log" "$TEST_TMP/status.json" "$TEST_TMP/images.json" "$TEST_TMP/ferry.log"
pass "/v1/status: $(jq -c '{source, renewals}' <<<"$creds"), no secret in the status or the log"

# ferry copy with a config.json: credHelpers names the helper for dst.
export FERRYTEST_TTL=30
mkdir -p "$TEST_TMP/ch" "$TEST_TMP/cs"
jq -n --arg d "$dst_ADDR" '{credHelpers: {($d): "ferrytest"}}' >"$TEST_TMP/ch/config.json"
jq -n '{credsStore: "ferrytest"}' >"$TEST_TMP/cs/config.json"
want=$(jq -r .digest "$TEST_TMP/t1.json")
for kind in ch cs; do
  before=$(calls)
  rc=0
  timeout 60 "$FERRY" copy --no-cache --authfile "$TEST_TMP/$kind/config.json" "$src_ADDR/app:t1" \
    "$dst_ADDR/$kind/app:t1" >"$TEST_TMP/$kind.out" 2>"$TEST_TMP/$kind.err" || rc=$?
  assert_eq "$rc" 0 "ferry copy with $kind/config.json ($(tail -n 2 "$TEST_TMP/$kind.err"))"
  assert_eq "$(token_manifest_digest dst "$kind/app" t1)" "$want" "$kind/app:t1 at dst"
  (($(calls) > before)) || fail "ferry copy with $kind/config.json did not run the helper"
  no_secret "ferry copy ($kind)" "$TEST_TMP/$kind.out" "$TEST_TMP/$kind.err"
done
pass "ferry copy --authfile: credHelpers and credsStore run the helper"
