#!/usr/bin/env bash
# TLS: verification is on by default; a registry whose certificate comes from
# a test CA is refused without --ca-file and works with it; a registry that
# requires client certificates works with --cert/--key; --insecure skips
# verification.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

pki=$TEST_TMP/pki
test_pki "$pki"

registry_start src
registry_start dst --tls "$pki/server.pem" "$pki/server.key"
registry_start mtls --tls "$pki/server.pem" "$pki/server.key" --client-ca "$pki/ca.pem" "$pki/client.pem" "$pki/client.key"
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 2 --layer-size 20K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")

run() { # expect-rc name args...
  local expect=$1 name=$2 rc=0
  shift 2
  "$FERRY" copy --no-cache --retries 1 "$@" 2>"$TEST_TMP/$name.err" || rc=$?
  assert_eq "$rc" "$expect" "$name exit status ($(head -c 300 "$TEST_TMP/$name.err"))"
}

run 1 unknown-ca --dest-tls "$src_ADDR/app:v1" "$dst_ADDR/app:v1"
grep -qi 'TLS\|certificate' "$TEST_TMP/unknown-ca.err" || fail "unknown CA error: $(cat "$TEST_TMP/unknown-ca.err")"
run 0 with-ca --dest-tls --ca-file "$pki/ca.pem" "$src_ADDR/app:v1" "$dst_ADDR/app:v1"
assert_eq "$(curl -s --cacert "$pki/ca.pem" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "https://$dst_ADDR/v2/app/manifests/v1" | digest_of)" "$want" "digest over TLS"
pass "verification on by default; --ca-file trusts the test CA"

run 0 insecure --dest-tls --insecure "$src_ADDR/app:v1" "$dst_ADDR/app2:v1"
pass "--insecure skips verification"

run 1 no-client-cert --dest-tls --ca-file "$pki/ca.pem" "$src_ADDR/app:v1" "$mtls_ADDR/app:v1"
run 0 client-cert --dest-tls --ca-file "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
  "$src_ADDR/app:v1" "$mtls_ADDR/app:v1"
assert_eq "$(curl -s --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' "https://$mtls_ADDR/v2/app/manifests/v1" | digest_of)" \
  "$want" "digest over mutual TLS"
pass "client certificates"

# An https registry is the source too: both sides over TLS.
run 0 tls-to-tls --tls --ca-file "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
  "$dst_ADDR/app:v1" "$mtls_ADDR/back:v1"
pass "TLS on both sides"
