#!/usr/bin/env bash
# The fault proxy plays the vendors' registries in front of a real
# Distribution registry, seen with curl: the repository gate (ECR's 404
# NAME_UNKNOWN, Harbor's 403 DENIED for a missing project) and the control
# endpoint that creates repositories; Docker Hub's pull limit (RateLimit
# headers, HEADs free, 429 with Retry-After until the window ends); ETags and
# 304s for If-None-Match; the error documents of injected statuses (a catalog
# refused 404 and 401, the 401 with the upstream's own challenge). Ferry says
# each refusal in one plain line (push to a missing repository, a denied
# project, a catalog it may not list).
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry
FERRY=$(ferry_bin)
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

registry_start reg
fixturegen push --registry "$reg_ADDR" --repo app --tag v1 --layers 1 --layer-size 2M --compact >"$TEST_TMP/app.json"
manifest_digest=$(jq -r .digest "$TEST_TMP/app.json")
big_blob=$(jq -r '[.blobs[] | select(.size > 1048576)][0].digest' "$TEST_TMP/app.json")
small_blob=$(jq -r '[.blobs[] | select(.size < 4096)][0].digest' "$TEST_TMP/app.json")
skopeo_raw "$reg_ADDR/app:v1" >"$TEST_TMP/manifest.json"

# req OUT METHOD URL [curl options]: prints the status; headers in OUT.h, body in OUT.b
req() {
  local out=$1 method=$2 url=$3
  shift 3
  local m=(-X "$method")
  [[ "$method" == HEAD ]] && m=(-I)
  curl -s -o "$out.b" -D "$out.h" -w '%{http_code}' --max-time 10 "${m[@]}" "$@" "$url"
}
# hdr FILE NAME: the value of header NAME (case-insensitive) in a header file
hdr() {
  tr -d '\r' <"$1" | awk -v n="${2,,}" 'index(tolower($0), n ": ") == 1 { print substr($0, length(n) + 3); exit }'
}
# error_is OUT STATUS CODE MESSAGE: the answer (STATUS, checked by the caller) is a registry's JSON error CODE/MESSAGE
error_is() {
  local out=$1 code=$3 message=$4 # $2, the status, is checked by the caller
  jq -e --arg c "$code" --arg m "$message" '.errors[0].code == $c and .errors[0].message == $m' \
    "$out.b" >/dev/null || fail "$out: want $code '$message', got $(cat "$out.b")"
  [[ "$(hdr "$out.h" Content-Type)" == application/json* ]] || fail "$out: not JSON: $(cat "$out.h")"
}

# --- The gate, as ECR: pushes to repositories not created are answered 404
# NAME_UNKNOWN without asking the registry; reads pass; created ones pass.
proxy_start ecr "$reg_ADDR" --repo-gate 404 --repo-gate-allow base
G="http://$ecr_ADDR"
assert_eq "$(req "$TEST_TMP/post" POST "$G/v2/app/blobs/uploads/")" 404 "POST to a repository not created"
error_is "$TEST_TMP/post" 404 NAME_UNKNOWN "repository app not found"
assert_eq "$(req "$TEST_TMP/mount" POST "$G/v2/team/app/blobs/uploads/?mount=$small_blob&from=app")" 404 "mount"
error_is "$TEST_TMP/mount" 404 NAME_UNKNOWN "repository team/app not found"
assert_eq "$(req "$TEST_TMP/put" PUT "$G/v2/app/manifests/v2" -H "Content-Type: $OCI_MANIFEST" \
  --data-binary "@$TEST_TMP/manifest.json")" 404 "manifest PUT"
error_is "$TEST_TMP/put" 404 NAME_UNKNOWN "repository app not found"
# An upload session of app opened at the registry itself: its PATCH and PUT are pushes too.
loc=$(curl -s -D - -o /dev/null -X POST "http://$reg_ADDR/v2/app/blobs/uploads/" | tr -d '\r' |
  awk 'tolower($1) == "location:" { print $2 }')
session=${loc#http://"$reg_ADDR"}
assert_eq "$(req "$TEST_TMP/patch" PATCH "$G$session" --data-binary 'abc' -H 'Content-Type: application/octet-stream')" 404 "PATCH of a session"
assert_eq "$(req "$TEST_TMP/sput" PUT "$G$session&digest=sha256:$(printf abc | sha256sum | cut -c1-64)")" 404 "PUT of a session"
error_is "$TEST_TMP/sput" 404 NAME_UNKNOWN "repository app not found"
assert_eq "$(registry_count_requests reg 'POST|PATCH|PUT' '/v2/(app|team/app)/.*' '.*' 'curl.*')" 1 \
  "the registry saw only the session opened at it"
# Reads pass through; a repository allowed at start takes pushes.
assert_eq "$(req "$TEST_TMP/tags" GET "$G/v2/app/tags/list")" 200 "tag listing through the gate"
assert_eq "$(jq -r '.tags | join(",")' "$TEST_TMP/tags.b")" v1 "tags through the gate"
assert_eq "$(req "$TEST_TMP/head" HEAD "$G/v2/app/manifests/v1" -H "Accept: $OCI_MANIFEST")" 200 "HEAD through the gate"
assert_eq "$(req "$TEST_TMP/base" POST "$G/v2/base/blobs/uploads/")" 202 "POST to an allowed repository"
# The control endpoint creates repositories (201, then 200: idempotent) and lists them.
code() { curl -s -o "$TEST_TMP/ctl.json" -w '%{http_code}' --max-time 5 "$@"; }
assert_eq "$(code "$ecr_CONTROL/repositories")" 200 "GET /repositories"
jq -e '.repositories == ["base"] and .creations == 0 and .gate == 404' "$TEST_TMP/ctl.json" >/dev/null ||
  fail "repositories at start: $(cat "$TEST_TMP/ctl.json")"
assert_eq "$(code -X POST "$ecr_CONTROL/repositories?name=app")" 201 "create app"
assert_eq "$(code -X POST "$ecr_CONTROL/repositories?name=app")" 200 "create app again"
assert_eq "$(jq -r .created "$TEST_TMP/ctl.json")" false "the second create created nothing"
assert_eq "$(code -X POST "$ecr_CONTROL/repositories?name=Bad%20Name")" 400 "a bad name"
assert_eq "$(code -X POST "$ecr_CONTROL/repositories")" 400 "no name"
proxy_repo_create ecr team/app
assert_eq "$(proxy_repos ecr '.repositories | sort | join(",")')" "app,base,team/app" "repositories"
assert_eq "$(proxy_repos ecr .creations)" 2 "two creations"
fixturegen push --registry "$ecr_ADDR" --repo app --tag v2 --seed 2 --compact >"$TEST_TMP/v2.json" ||
  fail "push to a created repository failed"
assert_eq "$(skopeo_raw "$reg_ADDR/app:v2" | digest_of)" "$(jq -r .digest "$TEST_TMP/v2.json")" "pushed through the gate"
assert_eq "$(proxy_stats ecr .gate.refused)" 5 "refusals counted"
assert_eq "$(proxy_stats ecr .faults_total)" 0 "the gate injects no fault"
pass "gate 404 (ECR): pushes to repositories not created refused as NAME_UNKNOWN; reads pass; created repositories take pushes"

# Ferry says it plainly: the repository, and what to do.
rc=0
"$FERRY" copy --no-cache "$reg_ADDR/app:v1" "$ecr_ADDR/other" >/dev/null 2>"$TEST_TMP/ecr.err" || rc=$?
assert_eq "$rc" 1 "copy to a repository not created fails"
assert_eq "$(wc -l <"$TEST_TMP/ecr.err")" 1 "one line"
grep -qF "push to $ecr_ADDR/other refused: NAME_UNKNOWN (repository other not found): other does not exist at $ecr_ADDR, which does not create repositories on push (ECR: aws ecr create-repository --repository-name other), or set create_repository" \
  "$TEST_TMP/ecr.err" || fail "unclear: $(cat "$TEST_TMP/ecr.err")"
pass "ferry copy to a repository not created: $(cat "$TEST_TMP/ecr.err")"

# --- The gate, as Harbor for a project that does not exist: 403 DENIED.
proxy_start harbor "$reg_ADDR" --repo-gate 403
assert_eq "$(req "$TEST_TMP/h403" POST "http://$harbor_ADDR/v2/proj/app/blobs/uploads/")" 403 "Harbor-style refusal"
error_is "$TEST_TMP/h403" 403 DENIED "requested access to the resource is denied"
rc=0
"$FERRY" copy --no-cache "$reg_ADDR/app:v1" "$harbor_ADDR/proj/app" >/dev/null 2>"$TEST_TMP/harbor.err" || rc=$?
assert_eq "$rc" 1 "copy to a missing project fails"
grep -qF "push to $harbor_ADDR/proj/app refused: DENIED (requested access to the resource is denied): the credentials lack push rights for proj/app, or the repository/project does not exist (ECR: create it or set create_repository; Harbor: create the project" \
  "$TEST_TMP/harbor.err" || fail "unclear: $(cat "$TEST_TMP/harbor.err")"
pass "gate 403 (Harbor): DENIED; ferry says what to do"

# --- Docker Hub's pull limit: 3 manifest GETs per 4 s window.
proxy_start hub "$reg_ADDR" '* /v2/app/ ratelimit=3/4'
H="http://$hub_ADDR"
assert_eq "$(req "$TEST_TMP/rl0" HEAD "$H/v2/app/manifests/v1" -H "Accept: $OCI_MANIFEST")" 200 "HEAD"
assert_eq "$(hdr "$TEST_TMP/rl0.h" RateLimit-Limit)" "3;w=4" "RateLimit-Limit"
assert_eq "$(hdr "$TEST_TMP/rl0.h" RateLimit-Remaining)" "3;w=4" "a HEAD is free"
for left in 2 1 0; do
  assert_eq "$(req "$TEST_TMP/rl" GET "$H/v2/app/manifests/v1" -H "Accept: $OCI_MANIFEST")" 200 "GET with $left left after it"
  assert_eq "$(hdr "$TEST_TMP/rl.h" RateLimit-Remaining)" "$left;w=4" "remaining"
done
assert_eq "$(digest_of <"$TEST_TMP/rl.b")" "$manifest_digest" "the manifest"
assert_eq "$(req "$TEST_TMP/rlb" GET "$H/v2/app/blobs/$small_blob")" 200 "a blob GET is not a pull"
assert_eq "$(hdr "$TEST_TMP/rlb.h" RateLimit-Remaining)" "0;w=4" "the blob carries the headers"
assert_eq "$(req "$TEST_TMP/rl429" GET "$H/v2/app/manifests/v1" -H "Accept: $OCI_MANIFEST")" 429 "over the limit"
error_is "$TEST_TMP/rl429" 429 TOOMANYREQUESTS "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
retry=$(hdr "$TEST_TMP/rl429.h" Retry-After)
((retry >= 1 && retry <= 4)) || fail "Retry-After '$retry'"
assert_eq "$(proxy_stats hub .ratelimit.remaining)" 0 "/stats shows none left"
assert_eq "$(proxy_stats hub .ratelimit.refused)" 1 "/stats counts the 429"
assert_eq "$(registry_count_requests reg GET '/v2/app/manifests/v1' '200' 'curl.*')" 3 "the 429 never reached the registry"
# shellcheck disable=SC2317 # called through wait_until
pull_again() { [[ "$(req "$TEST_TMP/rl2" GET "$H/v2/app/manifests/v1" -H "Accept: $OCI_MANIFEST")" == 200 ]]; }
wait_until 6 pull_again || fail "still limited after the window"
assert_eq "$(hdr "$TEST_TMP/rl2.h" RateLimit-Remaining)" "2;w=4" "a new window"
pass "ratelimit=3/4: headers on every answer, HEADs free, 429 with Retry-After $retry s, a new window after it"

# --- ETags: a listing (and a small blob) get the sha256 of their body; If-None-Match gets 304.
proxy_start et "$reg_ADDR" 'GET /tags/list etag' 'GET /blobs/ etag'
E="http://$et_ADDR/v2/app/tags/list"
listings=$(registry_count_requests reg GET '/v2/app/tags/list' '200' 'curl.*')
assert_eq "$(req "$TEST_TMP/e1" GET "$E")" 200 "listing"
etag=$(hdr "$TEST_TMP/e1.h" ETag)
assert_eq "$etag" "\"$(sha256sum <"$TEST_TMP/e1.b" | cut -c1-64)\"" "ETag is the body's sha256"
assert_eq "$(hdr "$TEST_TMP/e1.h" Content-Length)" "$(stat -c %s "$TEST_TMP/e1.b")" "Content-Length"
assert_eq "$(req "$TEST_TMP/e2" GET "$E" -H "If-None-Match: $etag")" 304 "If-None-Match: not modified"
[[ ! -s "$TEST_TMP/e2.b" ]] || fail "304 with a body: $(cat "$TEST_TMP/e2.b")"
assert_eq "$(hdr "$TEST_TMP/e2.h" ETag)" "$etag" "304 carries the ETag"
assert_eq "$(req "$TEST_TMP/e3" GET "$E" -H "If-None-Match: \"x\", W/$etag")" 304 "a list with a weak tag"
assert_eq "$(req "$TEST_TMP/e4" GET "$E" -H 'If-None-Match: "other"')" 200 "another ETag"
assert_eq "$(registry_count_requests reg GET '/v2/app/tags/list' '200' 'curl.*')" "$((listings + 4))" "the registry was asked every time"
fixturegen push --registry "$reg_ADDR" --repo app --tag v3 --seed 3 --compact >/dev/null
assert_eq "$(req "$TEST_TMP/e5" GET "$E" -H "If-None-Match: $etag")" 200 "changed listing"
assert_ne "$(hdr "$TEST_TMP/e5.h" ETag)" "$etag" "a new ETag"
assert_eq "$(jq -r '.tags | length' "$TEST_TMP/e5.b")" 3 "the new listing"
assert_eq "$(req "$TEST_TMP/e6" GET "http://$et_ADDR/v2/app/blobs/$small_blob")" 200 "small blob"
assert_eq "$(hdr "$TEST_TMP/e6.h" ETag)" "\"${small_blob#sha256:}\"" "a blob's ETag is its digest"
assert_eq "$(req "$TEST_TMP/e7" GET "http://$et_ADDR/v2/app/blobs/$big_blob")" 200 "big blob"
assert_eq "$(hdr "$TEST_TMP/e7.h" ETag)" "\"$big_blob\"" "over 1 MiB: the registry's own ETag, not the proxy's"
assert_eq "$(digest_of <"$TEST_TMP/e7.b")" "$big_blob" "the big blob passes whole"
assert_eq "$(proxy_stats et '"\(.etag.tagged) \(.etag.not_modified)"')" "6 2" "ETags counted"
pass "etag: sha256 ETags, 304 for If-None-Match (the registry still asked), bodies over 1 MiB pass as they came"

# --- Injected statuses are registry error documents: a catalog refused 404 and 401.
proxy_rules ecr put 'GET /v2/_catalog status=404'
assert_eq "$(req "$TEST_TMP/c404" GET "$G/v2/_catalog")" 404 "catalog 404"
error_is "$TEST_TMP/c404" 404 NOT_FOUND "not found"
proxy_rules ecr put 'GET /v2/_catalog status=404 code=NAME_UNKNOWN'
assert_eq "$(req "$TEST_TMP/c404b" GET "$G/v2/_catalog")" 404 "catalog 404 code="
error_is "$TEST_TMP/c404b" 404 NAME_UNKNOWN "repository name not known to registry"
proxy_rules ecr put 'GET /v2/_catalog status=401'
assert_eq "$(req "$TEST_TMP/c401" GET "$G/v2/_catalog")" 401 "catalog 401"
error_is "$TEST_TMP/c401" 401 UNAUTHORIZED "authentication required"
assert_eq "$(hdr "$TEST_TMP/c401.h" WWW-Authenticate)" 'Basic realm="ferry-chaos-proxy"' "a challenge"
rc=0
"$FERRY" catalog "$ecr_ADDR" >/dev/null 2>"$TEST_TMP/cat.err" || rc=$?
assert_ne "$rc" 0 "ferry catalog fails"
grep -qF "listing the catalog of $ecr_ADDR refused: UNAUTHORIZED (authentication required): $ecr_ADDR lists no repositories to these credentials" \
  "$TEST_TMP/cat.err" || fail "unclear: $(cat "$TEST_TMP/cat.err")"
# In front of a token registry the 401 carries the registry's own challenge, once it sent one.
registry_start tok --token
proxy_start ptok "$tok_ADDR" 'GET /v2/_catalog status=401'
curl -s -o /dev/null -D "$TEST_TMP/t0.h" "http://$tok_ADDR/v2/"
assert_eq "$(req "$TEST_TMP/t1" GET "http://$ptok_ADDR/v2/")" 401 "the registry's own 401"
assert_eq "$(req "$TEST_TMP/t2" GET "http://$ptok_ADDR/v2/_catalog")" 401 "injected 401"
assert_eq "$(hdr "$TEST_TMP/t2.h" WWW-Authenticate)" "$(hdr "$TEST_TMP/t0.h" WWW-Authenticate)" "the upstream's challenge"
[[ "$(hdr "$TEST_TMP/t2.h" WWW-Authenticate)" == Bearer* ]] || fail "not a Bearer challenge: $(cat "$TEST_TMP/t2.h")"
pass "status=404/401 answer registry error documents (code= sets the code); a 401 carries a challenge; ferry catalog says why"

for p in ecr harbor hub et ptok; do
  proxy_stop "$p"
  if grep -q 'Sanitizer' "$TEST_TMP/$p.log"; then
    fail "the proxy's sanitizer report: $(grep -A 12 'Sanitizer' "$TEST_TMP/$p.log" | head -n 20)"
  fi
done
pass "the proxies stop cleanly"
