#!/usr/bin/env bash
# Credentials: a token-auth source and a Basic-auth destination; credentials
# from flags, the environment and a Docker config.json; tokens cached per
# scope; a wrong password fails clearly without printing any secret.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --token
registry_start dst --htpasswd alice:s3cret-basic-pw
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 4 --layer-size 50K \
  --user "$TOKEN_USER" --password "$TOKEN_PASSWORD" --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
tokens_before=$(token_request_count)

# Flags.
"$FERRY" copy --json --no-cache --src-creds "$TOKEN_USER:$TOKEN_PASSWORD" --dest-creds alice:s3cret-basic-pw \
  "$src_ADDR/app:v1" "$dst_ADDR/app:v1" >"$TEST_TMP/c1.json" 2>"$TEST_TMP/c1.err"
assert_eq "$(jq -r .ok "$TEST_TMP/c1.json")" true "copy with flags"
assert_eq "$(skopeo_raw "$dst_ADDR/app:v1" --creds alice:s3cret-basic-pw | digest_of)" "$want" "digest"
# One token for the ping, one for the repository scope: every parallel
# request shares them instead of asking again.
used=$(($(token_request_count) - tokens_before))
[ "$used" -ge 1 ] && [ "$used" -le 2 ] || fail "expected 1-2 token requests, saw $used"
pass "token auth source, basic auth destination ($used token requests)"

# Environment variables.
FERRY_SRC_USERNAME=$TOKEN_USER FERRY_SRC_PASSWORD=$TOKEN_PASSWORD \
  FERRY_DEST_USERNAME=alice FERRY_DEST_PASSWORD=s3cret-basic-pw \
  "$FERRY" copy --no-cache "$src_ADDR/app:v1" "$dst_ADDR/env/app:v1" 2>/dev/null
assert_eq "$(skopeo_raw "$dst_ADDR/env/app:v1" --creds alice:s3cret-basic-pw | digest_of)" "$want" "env creds"
pass "credentials from the environment"

# A Docker config.json (auth = base64 user:password).
mkdir -p "$TEST_TMP/docker"
jq -n --arg s "$src_ADDR" --arg d "$dst_ADDR" \
  --arg sa "$(printf '%s:%s' "$TOKEN_USER" "$TOKEN_PASSWORD" | base64 -w0)" \
  --arg da "$(printf 'alice:s3cret-basic-pw' | base64 -w0)" \
  '{auths: {($s): {auth: $sa}, ("http://" + $d): {auth: $da}}}' >"$TEST_TMP/docker/config.json"
DOCKER_CONFIG=$TEST_TMP/docker "$FERRY" copy --no-cache "$src_ADDR/app:v1" "$dst_ADDR/cfg/app:v1" 2>/dev/null
assert_eq "$(skopeo_raw "$dst_ADDR/cfg/app:v1" --creds alice:s3cret-basic-pw | digest_of)" "$want" "config.json creds"
pass "credentials from ~/.docker/config.json"

# Wrong password: exit 1, one line, says auth, never shows the password.
set +e
"$FERRY" copy --no-cache --src-creds "$TOKEN_USER:$TOKEN_PASSWORD" --dest-creds alice:wrong-pw-123 \
  "$src_ADDR/app:v1" "$dst_ADDR/bad/app:v1" >"$TEST_TMP/bad.out" 2>"$TEST_TMP/bad.err"
rc=$?
set -e
assert_eq "$rc" 1 "wrong password exits 1"
# (besides the warnings that --src-creds and --dest-creds put the passwords in ps)
assert_eq "$(grep -vc 'puts the password in the process list' "$TEST_TMP/bad.err")" 1 "one line"
grep -qi 'HTTP 401\|auth' "$TEST_TMP/bad.err" || fail "auth error unclear: $(cat "$TEST_TMP/bad.err")"
if grep -q 'wrong-pw-123\|s3cret-basic-pw\|ferrypass' "$TEST_TMP/bad.err" "$TEST_TMP/bad.out"; then
  fail "a secret was printed"
fi
# No credentials at all against the token registry.
set +e
"$FERRY" copy --no-cache "$src_ADDR/app:v1" "$dst_ADDR/anon/app:v1" 2>"$TEST_TMP/anon.err"
rc=$?
set -e
assert_eq "$rc" 1 "anonymous copy from a protected registry exits 1"
grep -q 'UNAUTHORIZED\|denied\|HTTP 401' "$TEST_TMP/anon.err" || fail "anonymous error: $(cat "$TEST_TMP/anon.err")"
# Verbose logs carry no secret either.
"$FERRY" copy -vv --no-cache --src-creds "$TOKEN_USER:$TOKEN_PASSWORD" --dest-creds alice:s3cret-basic-pw \
  "$src_ADDR/app:v1" "$dst_ADDR/verbose/app:v1" 2>"$TEST_TMP/v.err"
if grep -q 's3cret-basic-pw\|ferrypass\|Bearer ey' "$TEST_TMP/v.err"; then
  fail "debug log shows a secret"
fi
pass "auth failures are clear and secrets stay out of output"
