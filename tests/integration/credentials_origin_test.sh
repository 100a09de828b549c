#!/usr/bin/env bash
# Credentials go only to their owner: the registry's own origin and the token
# realm a challenge from that origin names. A hostile registry
# (tests/fixtures/hostile_registry.py, on loopback, in front of a real
# Distribution) sends Ferry elsewhere: a tag listing's next page on another
# origin, an upload Location there, a blob GET redirected there, a 401 from
# the redirect target naming a realm of its own, a token endpoint redirecting
# there, a token realm over plain http:// from an HTTPS registry. The other
# origin logs every Authorization header it receives: there must be none.
# Last, names that only look like loopback (localhost.example.com,
# 127.example.com), mapped to 127.0.0.1 by a hosts file of the test's own (a
# private mount namespace), get HTTPS, not plain HTTP with the credentials.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
PW=s3cret-pw-origin

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 2 --layer-size 20K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
pki=$TEST_TMP/pki
test_pki "$pki"

n=0
# hostile MODE [fixture args...] : start the hostile registry; sets H (its
# address) and LOG (the other origin's log).
hostile() {
  local mode=$1
  shift
  n=$((n + 1))
  local port other
  port=$(free_port)
  other=$(free_port)
  LOG=$TEST_TMP/other-$n.log
  : >"$LOG"
  start_bg "hostile$n" python3 "$FERRY_SOURCE_DIR/tests/fixtures/hostile_registry.py" --mode "$mode" \
    --port "$port" --other-port "$other" --log "$LOG" "$@"
  H=127.0.0.1:$port
  local scheme=http curl_tls=()
  if [[ " $* " == *" --tls "* ]]; then
    scheme=https curl_tls=(--cacert "$pki/ca.pem")
  fi
  wait_until 10 curl -s "${curl_tls[@]}" -o /dev/null "$scheme://$H/v2/" || fail "the hostile registry ($mode) did not start"
  wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$other/" || fail "the other origin ($mode) did not start"
  : >"$LOG"
}

# no_leak WHAT : nothing in $LOG carried an Authorization header.
no_leak() {
  if grep -v ' -$' "$LOG" | grep -q .; then
    fail "$1: credentials went to another origin: $(grep -v ' -$' "$LOG" | head -n 3)"
  fi
  if grep -q "$PW" "$TEST_TMP"/*.out "$TEST_TMP"/*.err 2>/dev/null; then fail "$1: the password was printed"; fi
}

# ferry_run NAME ARGS... : run ferry (bounded), exit status in RC.
ferry_run() {
  local name=$1
  shift
  RC=0
  timeout 60 "$FERRY" "$@" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || RC=$?
}

# 1. A tag listing whose next page is on another origin.
hostile link
ferry_run link ls --creds "alice:$PW" "$H/app"
[[ -s "$LOG" ]] || note "link: the other origin was never asked"
no_leak link
pass "link: a next page on another origin carries no credentials (exit $RC, $(wc -l <"$LOG") request(s) there)"

# 2. An upload whose Location is on another origin (the image still arrives).
hostile upload --upstream "$dst_ADDR"
ferry_run upload copy --no-cache --retries 2 --dest-creds "alice:$PW" "$src_ADDR/app:v1" "$H/app:v1"
assert_eq "$RC" 0 "upload: ferry copy exit status ($(tail -n 2 "$TEST_TMP/upload.err"))"
grep -q '^PUT ' "$LOG" || fail "upload: no upload went to the other origin: $(head -n 3 "$LOG")"
no_leak upload
assert_eq "$(skopeo_raw "$dst_ADDR/app:v1" | digest_of)" "$want" "upload: the image at the destination"
pass "upload: $(grep -c '^P' "$LOG") upload request(s) at the Location's origin, none with credentials"

# 3. A blob GET redirected to another origin, with Basic and with Bearer.
for auth in basic bearer; do
  hostile redirect --upstream "$src_ADDR" --auth "$auth"
  ferry_run "redirect-$auth" copy --no-cache --retries 2 --src-creds "alice:$PW" "$H/app:v1" "$dst_ADDR/redir-$auth:v1"
  assert_eq "$RC" 0 "redirect ($auth): ferry copy exit status ($(tail -n 2 "$TEST_TMP/redirect-$auth.err"))"
  grep -q '^GET /v2/app/blobs/' "$LOG" || fail "redirect ($auth): no blob GET was redirected: $(head -n 3 "$LOG")"
  no_leak "redirect ($auth)"
  pass "redirect ($auth): $(grep -c '^GET' "$LOG") redirected blob GET(s), none with credentials"
done

# 4. The redirect target answers 401 naming a realm of its own: ignored.
hostile challenge --upstream "$src_ADDR"
ferry_run challenge copy --no-cache --retries 2 --src-creds "alice:$PW" "$H/app:v1" "$dst_ADDR/chal:v1"
((RC != 0)) || fail "challenge: the copy succeeded through a 401"
if grep -q '^GET /token' "$LOG"; then fail "challenge: Ferry asked the redirect target's realm for a token: $(grep -m 1 '^GET /token' "$LOG")"; fi
no_leak challenge
pass "challenge: a 401 from a redirect target changes no realm (exit $RC, no token request there)"

# 5. The registry's own token endpoint redirects to another origin.
hostile token-redirect --upstream "$src_ADDR"
ferry_run token-redirect copy --no-cache --retries 2 --src-creds "alice:$PW" "$H/app:v1" "$dst_ADDR/tokredir:v1"
grep -q '^GET /token' "$LOG" || note "token-redirect: the redirect was not followed (exit $RC)"
no_leak token-redirect
pass "token-redirect: the token request redirected elsewhere carries no Basic credentials (exit $RC)"

# 6. An HTTPS registry naming a token realm over plain http://: refused.
hostile http-realm --upstream "$src_ADDR" --tls "$pki/server.pem" "$pki/server.key"
ferry_run http-realm copy --no-cache --retries 2 --src-tls --ca-file "$pki/ca.pem" --src-creds "alice:$PW" \
  "$H/app:v1" "$dst_ADDR/httprealm:v1"
assert_eq "$RC" 1 "http-realm: ferry copy exit status ($(tail -n 2 "$TEST_TMP/http-realm.err"))"
[[ ! -s "$LOG" ]] || fail "http-realm: a token was asked over plain HTTP: $(head -n 3 "$LOG")"
grep -q 'token realm http://127.0.0.1:[0-9]*/token refused' "$TEST_TMP/http-realm.err" ||
  fail "http-realm: the error does not say why: $(tail -n 2 "$TEST_TMP/http-realm.err")"
no_leak http-realm
pass "http-realm: a realm over plain HTTP from an HTTPS registry is refused, with a one-line reason"

# 7. Look-alike loopback names get HTTPS: the plain-HTTP hostile registry
# sees a TLS hello, never a request with credentials.
unshare -m true 2>/dev/null || fail "unshare -m is needed for a hosts file of the test's own"
hostile link
port=${H##*:}
printf '127.0.0.1 localhost.example.com 127.example.com\n127.0.0.1 localhost\n' >"$TEST_TMP/hosts"
for name in localhost.example.com 127.example.com; do
  : >"$LOG.front"
  RC=0
  timeout 60 unshare -m sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$TEST_TMP/hosts" \
    "$FERRY" ls --retries 1 --creds "alice:$PW" "$name:$port/app" >"$TEST_TMP/lookalike.out" 2>"$TEST_TMP/lookalike.err" || RC=$?
  assert_eq "$RC" 1 "$name: ferry ls against a plain-HTTP server ($(tail -n 1 "$TEST_TMP/lookalike.err"))"
  if grep -q 'Basic' "$LOG.front"; then fail "$name: credentials went over plain HTTP: $(head -n 2 "$LOG.front")"; fi
  grep -qiE 'tls|ssl|https' "$TEST_TMP/lookalike.err" || fail "$name: not refused for TLS: $(tail -n 2 "$TEST_TMP/lookalike.err")"
done
no_leak lookalike
pass "localhost.example.com and 127.example.com get HTTPS: no request with credentials in clear"
