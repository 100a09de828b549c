#!/usr/bin/env bash
# Non-distributable (foreign) layers, as Windows base images have: a layer of
# media type application/vnd.docker.image.rootfs.foreign.diff.tar.gzip or
# application/vnd.oci.image.layer.nondistributable.* whose descriptor has
# `urls`, its blob served from there, not from the registry.
#
# Distribution 2.8 takes such a manifest without the blob only when the
# descriptor has `urls` AND its `validation.manifests.urls.allow` lets them
# through: by default (validation enabled, nothing allowed) it refuses every
# manifest with a layer URL ("invalid URL on layer", HTTP 500). The
# registries here allow https://example.invalid/, where the fixture points.
#
# 1. ferry sync, default (foreign_layers: skip): both media types arrive
#    byte for byte, the foreign blob is neither asked of the source nor put
#    at the destination, and ferry verify is clean (exit 0).
# 2. ferry serve: /v1/status counts the skipped layers per destination
#    (foreign_layers_skipped) and the log names each one.
# 3. A rule with foreign_layers: copy makes verify look for the blob.
# 4. ferry copy --foreign-layers copy, from a source that holds the blob:
#    the blob is at the destination; the default leaves it out and says so.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

# allow_layer_urls NAME: the registry takes manifests whose layers name https://example.invalid/.
allow_layer_urls() {
  local config_var="${1}_CONFIG"
  cat >>"${!config_var}" <<'YAML'
validation:
  manifests:
    urls:
      allow:
        - ^https://example\.invalid/
YAML
  registry_restart "$1"
}

registry_start src
registry_start dst
registry_start live
registry_start copied
for r in src dst live copied; do allow_layer_urls "$r"; done

fixturegen push --registry "$src_ADDR" --repo win/oci --tag v1 --seed 1 --foreign-layer \
  --compact >"$TEST_TMP/oci.json"
fixturegen push --registry "$src_ADDR" --repo win/docker --tag v1 --seed 2 --docker --foreign-layer \
  --compact >"$TEST_TMP/docker.json"
fixturegen push --registry "$src_ADDR" --repo held/app --tag v1 --seed 3 --foreign-layer --push-foreign \
  --compact >"$TEST_TMP/held.json"
OCI_FOREIGN=$(jq -r '.foreign_layers[0]' "$TEST_TMP/oci.json")
DOCKER_FOREIGN=$(jq -r '.foreign_layers[0]' "$TEST_TMP/docker.json")
HELD_FOREIGN=$(jq -r '.foreign_layers[0]' "$TEST_TMP/held.json")
[[ "$OCI_FOREIGN" == sha256:* && "$DOCKER_FOREIGN" == sha256:* ]] || fail "fixture has no foreign layer"
assert_eq "$(jq -r '.uploaded_blobs | index("'"$OCI_FOREIGN"'")' "$TEST_TMP/oci.json")" null \
  "the fixture did not push the foreign blob"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "$src_URL/v2/held/app/blobs/$HELD_FOREIGN")" 200 \
  "--push-foreign pushed it"

# ---- 1. sync, foreign_layers: skip (the default)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: win, source: src, repositories: ["win/**"], destinations: [{ registry: dst }] }
YAML
timeout 60 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync.out" 2>"$TEST_TMP/sync.err" ||
  fail "sync failed: $(tail -5 "$TEST_TMP/sync.err")"
for img in oci docker; do
  want=$(jq -r .digest "$TEST_TMP/$img.json")
  assert_eq "$(skopeo_raw "$dst_ADDR/win/$img:v1" | digest_of)" "$want" "win/$img:v1 byte for byte"
done
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "$dst_URL/v2/win/oci/blobs/$OCI_FOREIGN")" 404 \
  "OCI nondistributable blob not at the destination"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "$dst_URL/v2/win/docker/blobs/$DOCKER_FOREIGN")" 404 \
  "Docker foreign blob not at the destination"
assert_eq "$(registry_count_requests src 'GET|HEAD' "/v2/.*/blobs/($OCI_FOREIGN|$DOCKER_FOREIGN)" '.*' 'ferry/.*')" 0 \
  "foreign blobs never asked of the source"
assert_eq "$(registry_count_requests dst 'HEAD|POST|PUT|PATCH' "/v2/.*/blobs/.*($OCI_FOREIGN|$DOCKER_FOREIGN).*" '.*' 'ferry/.*')" 0 \
  "foreign blobs never looked for or pushed at the destination"
rc=0
timeout 60 "$FERRY" verify -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.out" 2>"$TEST_TMP/verify.err" || rc=$?
assert_eq "$rc" 0 "verify is clean with the foreign layers skipped ($(cat "$TEST_TMP/verify.out"))"
pass "sync skips foreign layers (OCI and Docker), manifests byte for byte, verify clean"

# ---- 2. serve: the status counts them, the log names them
port=$(free_port)
sed -e "s|data_dir: .*|data_dir: $TEST_TMP/data-live|" -e "s|poll_interval: 0|poll_interval: 1s\nlisten: 127.0.0.1:$port|" \
  -e "s|registry: dst|registry: live|" -e "s|^  dst: .*|  live: { url: \"http://$live_ADDR\" }|" \
  "$TEST_TMP/ferry.yaml" >"$TEST_TMP/live.yaml"
export FERRY_LOG_LEVEL=info # the skip's log line is at info
ferry_serve_start ferry "$TEST_TMP/live.yaml" "$port"
unset FERRY_LOG_LEVEL
skipped() {
  curl -sf "http://127.0.0.1:$port/v1/status" |
    jq -r '.destinations[] | select(.name == "live") | .foreign_layers_skipped'
}
skipped_is() { [ "$(skipped)" = "$1" ]; }
wait_until 30 skipped_is 2 || fail "foreign_layers_skipped is $(skipped), not 2"
grep -q "foreign layer skipped.*digest=$OCI_FOREIGN" "$TEST_TMP/ferry.log" || fail "no log line for the skip"
assert_eq "$(skopeo_raw "$live_ADDR/win/oci:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/oci.json")" \
  "serve copied win/oci:v1"
pass "/v1/status counts foreign_layers_skipped per destination, one log line per skip"

# ---- 3. a rule that copies them: verify looks for the blob, which is not there
sed -e 's|destinations: \[{ registry: dst }\] }|destinations: [{ registry: dst }], foreign_layers: copy }|' \
  "$TEST_TMP/ferry.yaml" >"$TEST_TMP/copy-rule.yaml"
grep -q 'foreign_layers: copy' "$TEST_TMP/copy-rule.yaml" || fail "test config not rewritten"
rc=0
timeout 60 "$FERRY" verify -c "$TEST_TMP/copy-rule.yaml" >"$TEST_TMP/verify2.out" 2>"$TEST_TMP/verify2.err" || rc=$?
assert_eq "$rc" 1 "verify with foreign_layers: copy finds the blob missing"
grep -q "incomplete.*layer $OCI_FOREIGN" "$TEST_TMP/verify2.out" ||
  fail "no incomplete drift for the foreign layer: $(cat "$TEST_TMP/verify2.out")"
pass "with foreign_layers: copy, verify reports a foreign layer the destination lacks"

# ---- 4. ferry copy --foreign-layers copy|skip
timeout 60 "$FERRY" copy --json --no-cache --foreign-layers copy "$src_ADDR/held/app:v1" "$copied_ADDR/held/app:v1" \
  >"$TEST_TMP/copy.json" 2>"$TEST_TMP/copy.err" || fail "copy failed: $(cat "$TEST_TMP/copy.err")"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "$copied_URL/v2/held/app/blobs/$HELD_FOREIGN")" 200 \
  "--foreign-layers copy put the blob"
assert_eq "$(jq -r .foreign_layers_skipped "$TEST_TMP/copy.json")" 0 "nothing skipped"
timeout 60 "$FERRY" copy --json --no-cache "$src_ADDR/held/app:v1" "$copied_ADDR/held/skip:v1" \
  >"$TEST_TMP/copy2.json" 2>"$TEST_TMP/copy2.err" || fail "copy failed: $(cat "$TEST_TMP/copy2.err")"
assert_eq "$(jq -r .foreign_layers_skipped "$TEST_TMP/copy2.json")" 1 "the default skips it"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "$copied_URL/v2/held/skip/blobs/$HELD_FOREIGN")" 404 \
  "skipped blob not at the destination"
assert_eq "$(skopeo_raw "$copied_ADDR/held/skip:v1" | digest_of)" "$(jq -r .digest "$TEST_TMP/held.json")" \
  "manifest byte for byte"
rc=0
"$FERRY" copy --no-cache --foreign-layers maybe "$src_ADDR/held/app:v1" "$copied_ADDR/held/x:v1" 2>"$TEST_TMP/bad.err" || rc=$?
assert_eq "$rc" 2 "--foreign-layers takes skip or copy"
pass "ferry copy --foreign-layers copy copies the blob; the default skips it"
