#!/usr/bin/env bash
# A layer garbage-collected at the source: `ferry sync` fails the image
# without opening an upload session at the destination for the missing blob
# (its source read fails first, so no POST is ever sent for it), while the
# other image completes. Once the source has the layer again, the next sync
# retries the failed job and resumes it: every blob of the image is uploaded
# once across both runs, none that reached the destination in the first run
# goes up again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --delete
registry_start dst
push_app() {
  fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 11 --layers 5 --layer-size 300K --compact
}
push_app >"$TEST_TMP/app.json"
fixturegen push --registry "$src_ADDR" --repo other --tag v1 --seed 22 --layers 2 --layer-size 64K --compact >"$TEST_TMP/other.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
want_other=$(jq -r .digest "$TEST_TMP/other.json")
mapfile -t blobs < <(jq -r '.blobs[].digest' "$TEST_TMP/app.json")
# A layer from the middle of the manifest: the blobs around it are copied.
missing=$(jq -r '[.blobs[] | select(.size > 100000)][2].digest' "$TEST_TMP/app.json")
[[ "$missing" == sha256:* ]] || fail "no layer to delete in $(cat "$TEST_TMP/app.json")"
status=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/app/blobs/$missing")
assert_eq "$status" 202 "the source deletes the layer"
status=$(curl -s -o /dev/null -w '%{http_code}' -I "$src_URL/v2/app/blobs/$missing")
assert_eq "$status" 404 "the source no longer has the layer"

cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: r, source: src, destinations: [{ registry: dst }] }
YAML

# The upload sessions opened for app (a mount names ?mount=, these do not)
# and the uploads completed there.
app_posts() { registry_count_requests dst POST '/v2/app/blobs/uploads/'; }
app_puts() { registry_count_requests dst PUT '/v2/app/blobs/uploads/.*digest=.*' 201; }
# The access-log line follows the response by a moment: wait (bounded) for
# the logs to settle before comparing, then compare whatever is there.
# shellcheck disable=SC2317 # called through wait_until
uploads_balanced() { (($(app_posts) == $(app_puts))); }
uploads_of() { # DIGEST: completed uploads of one blob into app
  registry_count_requests dst PUT "/v2/app/blobs/uploads/.*digest=sha256(:|%3A)${1#sha256:}(&.*)?" 201
}

set +e
timeout 120 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s1.err"
rc=$?
set -e
assert_eq "$rc" 1 "sync with an image missing a layer exits 1 ($(tail -3 "$TEST_TMP/s1.err"))"
grep -q "^FAILED *dst app@$want" "$TEST_TMP/s1.err" || fail "the failed job is not listed: $(cat "$TEST_TMP/s1.err")"
assert_eq "$(skopeo_raw "$dst_ADDR/other:v1" | digest_of)" "$want_other" "the other image completed"
pass "a layer missing at the source fails its image (exit 1); the other image completes"

assert_eq "$(registry_count_requests src GET "/v2/app/blobs/$missing" 404 'ferry.*')" \
  "$(registry_count_requests src GET "/v2/app/blobs/$missing" '' 'ferry.*')" "the missing layer was asked for, and only 404s came"
wait_until 5 uploads_balanced || true
posts1=$(app_posts)
puts1=$(app_puts)
note "run 1: $posts1 upload sessions opened for app, $puts1 uploads completed"
assert_eq "$posts1" "$puts1" "every upload session opened for app in run 1 was completed (none for the missing layer)"
assert_eq "$(uploads_of "$missing")" 0 "the missing layer was not uploaded"
pass "no upload session was opened for the layer the source could not give"

# The source has the layer again (fixturegen is deterministic: the same push
# gives the same digests and uploads only what the repository lacks).
push_app >"$TEST_TMP/app2.json"
assert_eq "$(jq -r .digest "$TEST_TMP/app2.json")" "$want" "the same image pushed again"
status=$(curl -s -o /dev/null -w '%{http_code}' -I "$src_URL/v2/app/blobs/$missing")
assert_eq "$status" 200 "the source has the layer again"

set +e
timeout 120 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/s2.err"
rc=$?
set -e
assert_eq "$rc" 0 "the second sync completes ($(tail -3 "$TEST_TMP/s2.err"))"
assert_eq "$(skopeo_raw "$dst_ADDR/app:v1" | digest_of)" "$want" "app:v1 at the destination has the source's digest"
pass "the second sync retries the failed image and completes it"

wait_until 5 uploads_balanced || true
assert_eq "$(app_posts)" "$(app_puts)" "every upload session opened for app was completed"
for d in "${blobs[@]}"; do
  assert_eq "$(uploads_of "$d")" 1 "blob $d uploaded once across both runs"
done
note "run 2 uploaded $(($(app_puts) - puts1)) blob(s) of ${#blobs[@]}"
pass "the retry resumed: no blob that reached the destination in run 1 went up again"
