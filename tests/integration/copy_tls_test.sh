#!/usr/bin/env bash
# TLS: verification is on by default; a registry whose certificate comes from
# a test CA is refused without --ca-file and works with it; a registry that
# requires client certificates works with --cert/--key; --insecure skips
# verification. A refusal says what failed (the certificate) and nothing
# reaches the registry's API; a success leaves every blob and the manifest
# there (read back over TLS).
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

# nothing_reached NAME REGISTRY : no request of Ferry's was served by REGISTRY
# (the handshake failed before HTTP) and it holds no repository.
nothing_reached() {
  local storage_var="${2}_STORAGE" storage
  storage=${!storage_var}
  assert_eq "$(registry_count_requests "$2" '.*' '.*' '' 'ferry.*')" 0 "$1: requests of Ferry's that $2 served"
  assert_eq "$(find "$storage" -type f 2>/dev/null | wc -l)" 0 "$1: files in $2's storage"
}
# holds_image NAME URL REPO [curl TLS args] : REPO:v1 is the source's
# manifest and every blob it names is there, read back over TLS.
holds_image() {
  local name=$1 url=$2 repo=$3
  shift 3
  assert_eq "$(curl -s "$@" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$url/v2/$repo/manifests/v1" | digest_of)" "$want" "$name: manifest digest over TLS"
  local b code
  for b in $(jq -r '.blobs[].digest' "$TEST_TMP/app.json"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@" -I "$url/v2/$repo/blobs/$b")
    assert_eq "$code" 200 "$name: blob $b at $repo"
  done
}

run 1 unknown-ca --dest-tls "$src_ADDR/app:v1" "$dst_ADDR/app:v1"
assert_eq "$(cat "$TEST_TMP/unknown-ca.err")" \
  "ferry copy: GET $dst_ADDR/v2/: TLS failure (SSL certificate problem: unable to get local issuer certificate)" \
  "unknown CA: the error line"
nothing_reached unknown-ca dst
run 0 with-ca --dest-tls --ca-file "$pki/ca.pem" "$src_ADDR/app:v1" "$dst_ADDR/app:v1"
holds_image with-ca "https://$dst_ADDR" app --cacert "$pki/ca.pem"
pass "verification on by default; --ca-file trusts the test CA"

run 0 insecure --dest-tls --insecure "$src_ADDR/app:v1" "$dst_ADDR/app2:v1"
holds_image insecure "https://$dst_ADDR" app2 --cacert "$pki/ca.pem"
pass "--insecure skips verification"

run 1 no-client-cert --dest-tls --ca-file "$pki/ca.pem" "$src_ADDR/app:v1" "$mtls_ADDR/app:v1"
# The server refused the handshake for want of a client certificate: the one
# line says so (a TLS failure about the certificate), not that the registry
# is unreachable.
err=$(cat "$TEST_TMP/no-client-cert.err")
# (Checked last, so that a wrong line hides none of the checks below.)
client_cert_line_ok=1
[[ "$err" == "ferry copy: GET $mtls_ADDR/v2/: TLS failure ("*certificate*")" ]] || client_cert_line_ok=0
nothing_reached no-client-cert mtls
run 0 client-cert --dest-tls --ca-file "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
  "$src_ADDR/app:v1" "$mtls_ADDR/app:v1"
holds_image client-cert "https://$mtls_ADDR" app --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key"
pass "client certificates"

# An https registry is the source too: both sides over TLS.
run 0 tls-to-tls --tls --ca-file "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
  "$dst_ADDR/app:v1" "$mtls_ADDR/back:v1"
holds_image tls-to-tls "https://$mtls_ADDR" back --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key"
pass "TLS on both sides"

((client_cert_line_ok)) ||
  fail "no client certificate: the error does not say the TLS handshake failed on the certificate: $err"
pass "a refused client certificate is named as such"
