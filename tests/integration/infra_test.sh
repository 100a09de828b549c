#!/usr/bin/env bash
# Proves the integration-test infrastructure itself, without Ferry: lib.sh
# (registries, token issuer, request counting, restart, cleanup),
# fixturegen.py (images, indexes, Docker media types, shared bases, referrers
# and their tag fallback, chunked uploads, corrupt-blob) and token_issuer.py.
# shellcheck disable=SC2154 # NAME_ADDR etc. are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"

t_start=$(_itest_now_ms)
export REGISTRY_AUTH_FILE="$TEST_TMP/skopeo-auth.json" # keep skopeo off ~/.docker
echo '{}' >"$REGISTRY_AUTH_FILE"

# Notification sink: appends each event envelope to a file (one JSON per line).
notify_port=$(free_port)
cat >"$TEST_TMP/notify_sink.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
out = sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
start_bg notify python3 "$TEST_TMP/notify_sink.py" "$notify_port" "$TEST_TMP/events.jsonl"

registry_start plain --delete --notify "http://127.0.0.1:$notify_port/events"
registry_start basic --htpasswd alice:secret
registry_start tok --token
pass "three registries up: plain=$plain_ADDR basic=$basic_ADDR tok=$tok_ADDR (token issuer $TOKEN_ADDR)"

manifest_accept="application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json"
manifest_accept+=",application/vnd.docker.distribution.manifest.list.v2+json"
manifest_accept+=",application/vnd.docker.distribution.manifest.v2+json"

# check_manifest ADDR REPO REF DIGEST [skopeo creds...]: raw bytes hash to DIGEST
check_manifest() {
  local addr=$1 repo=$2 ref=$3 want=$4
  shift 4
  local sep=: got
  [[ "$ref" == sha256:* ]] && sep=@
  got=$(skopeo_raw "$addr/$repo$sep$ref" "$@" | digest_of)
  assert_eq "$got" "$want" "digest of $addr/$repo$sep$ref"
}

# ---- 1. two-platform OCI index with two referrers and a shared base layer
fixturegen push --registry "$plain_ADDR" --repo multi --tag v1 \
  --platforms linux/amd64,linux/arm64/v8 --referrers 2 --base-layers 1 \
  --seed 7 >"$TEST_TMP/multi.json"
top=$(jq -r .digest "$TEST_TMP/multi.json")
assert_eq "$(jq -r .media_type "$TEST_TMP/multi.json")" application/vnd.oci.image.index.v1+json "index media type"
assert_eq "$(jq '.children | length' "$TEST_TMP/multi.json")" 2 "children"
assert_eq "$(jq '.referrers | length' "$TEST_TMP/multi.json")" 2 "referrers"
dry=$(fixturegen push --registry "$plain_ADDR" --repo multi --tag v1 --platforms linux/amd64,linux/arm64/v8 \
  --referrers 2 --base-layers 1 --seed 7 --dry-run --compact | jq -r .digest)
assert_eq "$dry" "$top" "--dry-run gives the pushed digest (determinism)"

check_manifest "$plain_ADDR" multi v1 "$top"
skopeo_raw "$plain_ADDR/multi:v1" >"$TEST_TMP/index.json"
assert_eq "$(jq -c '[.manifests[].digest]' "$TEST_TMP/index.json")" \
  "$(jq -c .children "$TEST_TMP/multi.json")" "index lists the children"
assert_eq "$(jq -r '[.manifests[].platform | "\(.os)/\(.architecture)\(if .variant then "/"+.variant else "" end)"] | join(",")' \
  "$TEST_TMP/index.json")" "linux/amd64,linux/arm64/v8" "index platforms"
for child in $(jq -r '.children[]' "$TEST_TMP/multi.json"); do
  check_manifest "$plain_ADDR" multi "$child" "$child"
done
# Both children share the base layer (first layer) and differ in the rest.
c0=$(jq -r '.children[0]' "$TEST_TMP/multi.json")
c1=$(jq -r '.children[1]' "$TEST_TMP/multi.json")
l0=$(skopeo_raw "$plain_ADDR/multi@$c0" | jq -c '[.layers[].digest]')
l1=$(skopeo_raw "$plain_ADDR/multi@$c1" | jq -c '[.layers[].digest]')
assert_eq "$(jq -r '.[0]' <<<"$l0")" "$(jq -r '.[0]' <<<"$l1")" "children share the base layer"
assert_ne "$(jq -r '.[1]' <<<"$l0")" "$(jq -r '.[1]' <<<"$l1")" "children's own layers differ"

# The manifest GET over plain HTTP reports the same digest.
hdr_digest=$(curl -sfS -o /dev/null -D - -H "Accept: $manifest_accept" "$plain_URL/v2/multi/manifests/v1" |
  tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
assert_eq "$hdr_digest" "$top" "Docker-Content-Digest of multi:v1"

# Referrers tag fallback: sha256-<hex> lists every referrer with its artifactType.
rtag="sha256-${top#sha256:}"
assert_eq "$(jq -r .referrers_tag "$TEST_TMP/multi.json")" "$rtag" "referrers tag name"
skopeo_raw "$plain_ADDR/multi:$rtag" >"$TEST_TMP/referrers.json"
check_manifest "$plain_ADDR" multi "$rtag" "$(digest_of <"$TEST_TMP/referrers.json")"
assert_eq "$(jq -r .mediaType "$TEST_TMP/referrers.json")" application/vnd.oci.image.index.v1+json "referrers index type"
assert_eq "$(jq -c '[.manifests[].digest] | sort' "$TEST_TMP/referrers.json")" \
  "$(jq -c '.referrers | sort' "$TEST_TMP/multi.json")" "referrers tag lists the referrers"
assert_eq "$(jq -r '[.manifests[].artifactType] | unique | join(",")' "$TEST_TMP/referrers.json")" \
  application/vnd.example.signature "referrer artifactType in the index"
for r in $(jq -r '.referrers[]' "$TEST_TMP/multi.json"); do
  check_manifest "$plain_ADDR" multi "$r" "$r"
  skopeo_raw "$plain_ADDR/multi@$r" >"$TEST_TMP/ref.json"
  assert_eq "$(jq -r .subject.digest "$TEST_TMP/ref.json")" "$top" "referrer $r subject"
  assert_eq "$(jq -r .artifactType "$TEST_TMP/ref.json")" application/vnd.example.signature "referrer $r artifactType"
done
# A second push of one more referrer type merges into the existing tag.
fixturegen push --registry "$plain_ADDR" --repo multi --tag v1 --platforms linux/amd64,linux/arm64/v8 \
  --referrers 3 --base-layers 1 --seed 7 --artifact-type application/vnd.example.signature,application/vnd.example.sbom \
  >"$TEST_TMP/multi2.json"
assert_eq "$(jq -r .digest "$TEST_TMP/multi2.json")" "$top" "re-push keeps the digest"
assert_eq "$(jq '.uploaded_blobs | length' "$TEST_TMP/multi2.json")" 2 "re-push uploads only the new referrer blobs"
n=$(skopeo_raw "$plain_ADDR/multi:$rtag" | jq '[.manifests[].digest] | unique | length')
# Referrer 0 is the same as before; 1 is now an sbom (new digest); 2 is new.
assert_eq "$n" 4 "referrers tag after merging (2 old + 2 new)"
pass "OCI index with referrers and referrers tag fallback"

# ---- 2. Docker media types
fixturegen push --registry "$plain_ADDR" --repo dock --tag v1 --docker --layers 2 >"$TEST_TMP/dock.json"
d=$(jq -r .digest "$TEST_TMP/dock.json")
check_manifest "$plain_ADDR" dock v1 "$d"
skopeo_raw "$plain_ADDR/dock:v1" >"$TEST_TMP/dock-m.json"
assert_eq "$(jq -r .mediaType "$TEST_TMP/dock-m.json")" application/vnd.docker.distribution.manifest.v2+json "docker manifest type"
assert_eq "$(jq -r .config.mediaType "$TEST_TMP/dock-m.json")" application/vnd.docker.container.image.v1+json "docker config type"
assert_eq "$(jq -r '[.layers[].mediaType] | unique | join(",")' "$TEST_TMP/dock-m.json")" \
  application/vnd.docker.image.rootfs.diff.tar "docker layer type"
fixturegen push --registry "$plain_ADDR" --repo dock --tag list --docker --platforms linux/amd64,linux/arm/v7 >"$TEST_TMP/dockl.json"
check_manifest "$plain_ADDR" dock list "$(jq -r .digest "$TEST_TMP/dockl.json")"
assert_eq "$(skopeo_raw "$plain_ADDR/dock:list" | jq -r .mediaType)" \
  application/vnd.docker.distribution.manifest.list.v2+json "docker manifest list type"
# A layer is a valid tar holding one file of the requested size.
layer=$(jq -r '.layers[0].digest' "$TEST_TMP/dock-m.json")
curl -sfS "$plain_URL/v2/dock/blobs/$layer" -o "$TEST_TMP/layer.tar"
assert_eq "$(digest_of <"$TEST_TMP/layer.tar")" "$layer" "layer blob digest"
assert_eq "$(tar -tvf "$TEST_TMP/layer.tar" | awk '{print $3, $6}')" "4096 ferry/layer-0.bin" "layer tar listing"
pass "Docker schema2 image and manifest list"

# ---- 3. shared-base pair on the Basic-auth registry
for app in app1 app2; do
  fixturegen push --registry "$basic_ADDR" --repo "base/$app" --tag v1 --user alice --password secret \
    --base-seed shared --base-layers 2 --seed "$app" >"$TEST_TMP/$app.json"
  check_manifest "$basic_ADDR" "base/$app" v1 "$(jq -r .digest "$TEST_TMP/$app.json")" --creds alice:secret
done
m1=$(skopeo_raw "$basic_ADDR/base/app1:v1" --creds alice:secret | jq -c '[.layers[].digest]')
m2=$(skopeo_raw "$basic_ADDR/base/app2:v1" --creds alice:secret | jq -c '[.layers[].digest]')
assert_eq "$(jq -c '.[0:2]' <<<"$m1")" "$(jq -c '.[0:2]' <<<"$m2")" "shared base layers are identical"
assert_ne "$(jq -r '.[2]' <<<"$m1")" "$(jq -r '.[2]' <<<"$m2")" "own layers differ"
assert_eq "$(jq '.blobs | length' "$TEST_TMP/app1.json")" 4 "2 base + 1 own layer + config"
code=$(curl -s -o /dev/null -w '%{http_code}' "$basic_URL/v2/base/app1/manifests/v1")
assert_eq "$code" 401 "Basic registry without credentials"
code=$(curl -s -o /dev/null -w '%{http_code}' -u alice:wrong "$basic_URL/v2/base/app1/manifests/v1")
assert_eq "$code" 401 "Basic registry with a wrong password"
if fixturegen push --registry "$basic_ADDR" --repo base/app3 --tag v1 >/dev/null 2>"$TEST_TMP/err"; then
  fail "fixturegen pushed to the Basic registry without credentials"
fi
pass "shared-base pair on the Basic-auth registry"

# ---- 4. token auth
fixturegen push --registry "$tok_ADDR" --repo team/app --tag v1 --user "$TOKEN_USER" --password "$TOKEN_PASSWORD" \
  --layers 2 >"$TEST_TMP/tok.json"
td=$(jq -r .digest "$TEST_TMP/tok.json")
assert_eq "$(jq .token_requests "$TEST_TMP/tok.json")" 1 "fixturegen fetches one token and reuses it"
assert_eq "$(token_request_count 'repository:team/app:pull,push')" 1 "token log records the push scope"
check_manifest "$tok_ADDR" team/app v1 "$td" --creds "$TOKEN_USER:$TOKEN_PASSWORD"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
  --preserve-digests --src-creds "$TOKEN_USER:$TOKEN_PASSWORD" \
  "docker://$tok_ADDR/team/app:v1" "docker://$plain_ADDR/fromtok:v1" >/dev/null
check_manifest "$plain_ADDR" fromtok v1 "$td"
code=$(curl -s -o "$TEST_TMP/body" -D "$TEST_TMP/hdrs" -w '%{http_code}' "$tok_URL/v2/team/app/manifests/v1")
assert_eq "$code" 401 "token registry without a token"
grep -qi "^www-authenticate: Bearer realm=\"$TOKEN_REALM\",service=\"$tok_SERVICE\",scope=\"repository:team/app:pull\"" \
  "$TEST_TMP/hdrs" || fail "Bearer challenge: $(cat "$TEST_TMP/hdrs")"
if skopeo_raw "$tok_ADDR/team/app:v1" >/dev/null 2>&1; then
  fail "skopeo read the token registry without credentials"
fi
anon=$(curl -sfS "$TOKEN_REALM?service=$tok_SERVICE&scope=repository:team/app:pull" | jq -r .token)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $anon" "$tok_URL/v2/team/app/manifests/v1")
assert_eq "$code" 401 "anonymous token grants nothing"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$TOKEN_USER:nope" "$TOKEN_REALM?service=$tok_SERVICE&scope=repository:team/app:pull")
assert_eq "$code" 401 "token issuer refuses a wrong password"
tokn=$(curl -sfS -u "$TOKEN_USER:$TOKEN_PASSWORD" \
  "$TOKEN_REALM?service=$tok_SERVICE&scope=repository:team/app:pull&scope=repository:other:pull" | jq -r .access_token)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tokn" -H "Accept: $manifest_accept" \
  "$tok_URL/v2/team/app/manifests/v1")
assert_eq "$code" 200 "token with two scopes pulls"
claims=$(cut -d. -f2 <<<"$tokn" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' | base64 -d)
assert_eq "$(jq -c '[.access[].name]' <<<"$claims")" '["team/app","other"]' "token grants both scopes"
assert_eq "$(jq -r .aud <<<"$claims")" "$tok_SERVICE" "token audience"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tokn" -X DELETE "$tok_URL/v2/team/app/manifests/$td")
assert_eq "$code" 401 "pull token cannot delete"
pass "token auth: push, skopeo copy with creds, 401 without"

# ---- 5. request counting
# multi:v1 pushes: 2 children + index + 2 referrers + referrers tag = 6, then
# the re-push: the same 3 + 3 referrers + the tag again = 7.
n=$(registry_count_requests plain PUT '/v2/multi/manifests/[^?]+')
assert_eq "$n" 13 "PUT manifest requests to plain/multi"
n=$(registry_count_requests plain PUT '/v2/multi/manifests/sha256-[0-9a-f]{64}' 201)
assert_eq "$n" 2 "PUT of the referrers tag"
n=$(registry_count_requests plain 'GET|HEAD' '/v2/' 200 'ferry-fixturegen/.*')
assert_eq "$n" 4 "fixturegen pings: 4 pushes to plain so far (probes, skopeo not counted)"
n=$(registry_count_requests basic GET '/v2/base/app1/manifests/v1' 401)
assert_eq "$n" 2 "401s counted on the Basic registry"
n=$(registry_count_requests plain GET '/v2/dock/blobs/sha256:[0-9a-f]{64}')
assert_eq "$n" 1 "blob GETs on plain/dock"
registry_access_log plain >"$TEST_TMP/access.txt" # (not piped into grep -q: pipefail + SIGPIPE)
grep -qx "GET /v2/dock/blobs/$layer 200" "$TEST_TMP/access.txt" || fail "registry_access_log lacks the blob GET"
pass "registry_count_requests"

# ---- 6. chunked upload of a larger layer
fixturegen push --registry "$plain_ADDR" --repo big --tag v1 --layer-size 40M --chunk-size 16M \
  >"$TEST_TMP/big.json"
check_manifest "$plain_ADDR" big v1 "$(jq -r .digest "$TEST_TMP/big.json")"
assert_eq "$(registry_count_requests plain PATCH '/v2/big/blobs/uploads/.*' 202)" 3 "40 MiB layer in 3 PATCH chunks"
big=$(jq -r '.blobs[0].digest' "$TEST_TMP/big.json")
assert_eq "$(curl -sfS "$plain_URL/v2/big/blobs/$big" | digest_of)" "$big" "chunked blob digest"
registry_wait_requests plain GET "/v2/big/blobs/$big" 1 5 200 'curl/.*' || fail "big blob GET not logged"
pass "chunked upload"

# ---- 7. corrupt-blob
own=$(jq -r '.[1]' <<<"$l0")
before=$(curl -sfS "$plain_URL/v2/multi/blobs/$own" | digest_of)
assert_eq "$before" "$own" "blob intact before corruption"
fixturegen corrupt-blob --storage "$plain_STORAGE" --digest "$own" >"$TEST_TMP/corrupt.json"
after=$(curl -sfS "$plain_URL/v2/multi/blobs/$own" | digest_of)
assert_ne "$after" "$own" "corrupted blob served with another digest"
size=$(curl -sfS "$plain_URL/v2/multi/blobs/$own" | wc -c)
assert_eq "$size" "$(jq -r .size "$TEST_TMP/corrupt.json")" "corrupted blob keeps its size"
pass "corrupt-blob"

# ---- 8. notifications and restart
# Pushes to plain produced events; the sink must have received some.
have_events() { [[ -s "$TEST_TMP/events.jsonl" ]] && grep -qE '"action": *"push"' "$TEST_TMP/events.jsonl"; }
wait_until 10 have_events || fail "no push events reached the notification sink"
old_pid=$plain_PID
registry_stop plain
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$plain_URL/v2/" || true)
assert_eq "$code" 000 "stopped registry does not answer"
registry_restart plain
assert_ne "$plain_PID" "$old_pid" "restart gives a new process"
check_manifest "$plain_ADDR" multi v1 "$top"
pass "notifications; restart keeps port $plain_PORT and storage"

# ---- 9. IPv6 loopback
if free_port --ipv6 >/dev/null 2>&1; then
  registry_start v6 --ipv6
  fixturegen push --registry "$v6_ADDR" --repo six --tag v1 >"$TEST_TMP/six.json"
  # (skopeo's reference parser refuses IPv6 literals, so curl checks this one)
  got=$(curl -sfS -g -H "Accept: $manifest_accept" "$v6_URL/v2/six/manifests/v1" | digest_of)
  assert_eq "$got" "$(jq -r .digest "$TEST_TMP/six.json")" "digest of $v6_ADDR/six:v1"
  pass "registry and fixturegen on $v6_ADDR"
else
  note "no ::1 here; IPv6 check skipped"
fi

pass "infra: all checks in $((($(_itest_now_ms) - t_start) / 1000)) s"
