#!/usr/bin/env bash
# Identity tokens: a Docker config.json whose auths entry holds an
# "identitytoken" (what `docker login` keeps for an OAuth2 login) is a
# refresh token, exchanged at the realm with the refresh_token grant (POST
# /token), never sent as a password. `ferry copy --authfile` and `ferry ls
# --authfile` work with it, and so does `ferry sync` through the config's
# top-level docker_config; the issuer's log shows grant refresh_token. A
# wrong identity token fails with one line naming the registry, and the token
# is printed nowhere.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

token_issuer_start --password-dir "$TEST_TMP/passwords" --expires 2 --hard-expiry
registry_start src
registry_start dst --token
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 3 --layer-size 20K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
T=$(password_mint idtuser 120 refresh)
BAD=ftr-not-a-token-$RANDOM$RANDOM
mkdir -p "$TEST_TMP/good" "$TEST_TMP/bad"
jq -n --arg d "$dst_ADDR" --arg t "$T" '{auths: {($d): {identitytoken: $t}}}' >"$TEST_TMP/good/config.json"
jq -n --arg d "$dst_ADDR" --arg t "$BAD" '{auths: {($d): {identitytoken: $t}}}' >"$TEST_TMP/bad/config.json"
# refresh_grants STATUS : refresh_token grants answered STATUS so far
refresh_grants() {
  jq -s --argjson s "$1" '[.[] | select(.grant == "refresh_token" and .status == $s)] | length' "$TOKEN_LOG"
}
# no_token FILE... : neither identity token is in FILE
no_token() {
  if grep -qF -e "$T" -e "$BAD" "$@"; then fail "an identity token is printed in $*"; fi
}

# 1. ferry copy --authfile: the refresh_token grant, then the push.
rc=0
timeout 60 "$FERRY" copy --no-cache --authfile "$TEST_TMP/good/config.json" "$src_ADDR/app:v1" "$dst_ADDR/app:v1" \
  >"$TEST_TMP/copy.out" 2>"$TEST_TMP/copy.err" || rc=$?
assert_eq "$rc" 0 "ferry copy with an identity token ($(tail -n 2 "$TEST_TMP/copy.err"))"
assert_eq "$(token_manifest_digest dst app v1)" "$want" "app:v1 at dst"
ok=$(refresh_grants 200)
((ok >= 1)) || fail "no refresh_token grant at the issuer: $(jq -c 'del(.granted)' "$TOKEN_LOG" | tail -n 3)"
jq -se '[.[] | select(.grant == "refresh_token" and .status == 200)] | all(.user == "idtuser")' "$TOKEN_LOG" >/dev/null ||
  fail "the refresh grants were not idtuser's"
jq -se '[.[] | select(.user == "idtuser" and .grant != "refresh_token")] | length == 0' "$TOKEN_LOG" >/dev/null ||
  fail "the identity token was sent as a password: $(jq -c 'select(.user == "idtuser" and .grant != "refresh_token")' "$TOKEN_LOG" | head -n 2)"
no_token "$TEST_TMP/copy.out" "$TEST_TMP/copy.err"
pass "ferry copy --authfile with an identitytoken: $ok refresh_token grant(s), no password login"

# 2. ferry ls --authfile lists dst's tags the same way.
before=$(refresh_grants 200)
rc=0
timeout 30 "$FERRY" ls --authfile "$TEST_TMP/good/config.json" "$dst_ADDR/app" >"$TEST_TMP/ls.out" 2>"$TEST_TMP/ls.err" || rc=$?
assert_eq "$rc" 0 "ferry ls with an identity token ($(tail -n 2 "$TEST_TMP/ls.err"))"
assert_eq "$(tr -d '\r' <"$TEST_TMP/ls.out")" v1 "ferry ls lists app's tags"
(($(refresh_grants 200) > before)) || fail "ferry ls did not use the refresh_token grant"
no_token "$TEST_TMP/ls.out" "$TEST_TMP/ls.err"
pass "ferry ls --authfile with an identitytoken"

# 3. ferry sync: docker_config names the same file for a registry with no credentials of its own.
before=$(refresh_grants 200)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
docker_config: $TEST_TMP/good/config.json
retry: { attempts: 2, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst, repository: "sync/{repo}" }] }
YAML
rc=0
timeout 60 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync.out" 2>"$TEST_TMP/sync.err" || rc=$?
assert_eq "$rc" 0 "ferry sync with docker_config ($(tail -n 2 "$TEST_TMP/sync.err"))"
assert_eq "$(token_manifest_digest dst sync/app v1)" "$want" "sync/app:v1 at dst"
(($(refresh_grants 200) > before)) || fail "ferry sync did not use the refresh_token grant"
no_token "$TEST_TMP/sync.out" "$TEST_TMP/sync.err"
pass "ferry sync with docker_config: the identitytoken is used for dst"

# 4. A wrong identity token: refused at the realm, one line naming the registry.
before=$(refresh_grants 401)
rc=0
timeout 60 "$FERRY" copy --no-cache --retries 1 --authfile "$TEST_TMP/bad/config.json" "$src_ADDR/app:v1" \
  "$dst_ADDR/bad/app:v1" >"$TEST_TMP/bad.out" 2>"$TEST_TMP/bad.err" || rc=$?
((rc != 124)) || fail "ferry copy did not return within 60 s"
((rc != 0)) || fail "ferry copy succeeded with a wrong identity token"
(($(refresh_grants 401) > before)) || fail "the wrong token was not tried with the refresh_token grant"
assert_eq "$(grep -c . "$TEST_TMP/bad.err")" 1 "the error is one line ($(cat "$TEST_TMP/bad.err"))"
grep -qF "$dst_ADDR" "$TEST_TMP/bad.err" || fail "the error does not name the registry: $(cat "$TEST_TMP/bad.err")"
assert_eq "$(token_manifest_digest dst bad/app v1)" 404 "nothing was pushed"
no_token "$TEST_TMP/bad.out" "$TEST_TMP/bad.err"
pass "a wrong identitytoken fails with one line naming the registry (exit $rc)"
