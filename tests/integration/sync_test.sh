#!/usr/bin/env bash
# ferry sync: one source, three destinations (one with Basic auth, one mapped
# to mirror/{repo}); images with shared base layers, a multi-arch index and
# referrers. Every destination converges by digest; each source blob is read
# exactly once; a second sync sends no request of any kind (not even a HEAD)
# to any destination and exits 0; a new tag is picked up by the next.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start d1
registry_start d2 --htpasswd mirror:d2-secret-pw
registry_start d3
fixturegen push --registry "$src_ADDR" --repo team/web --tag v1 --seed 1 --layers 2 --layer-size 200K \
  --base-seed 9 --base-layers 2 --compact >"$TEST_TMP/web.json"
fixturegen push --registry "$src_ADDR" --repo team/api --tag v1 --seed 2 --layers 2 --layer-size 200K \
  --base-seed 9 --base-layers 2 --compact >"$TEST_TMP/api.json"
fixturegen push --registry "$src_ADDR" --repo team/multi --tag v2 --seed 3 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 100K --referrers 2 --compact >"$TEST_TMP/multi.json"
fixturegen push --registry "$src_ADDR" --repo scratch --tag v1 --seed 4 --layers 1 --layer-size 1K --compact >/dev/null

export D2_PASSWORD=d2-secret-pw
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR", username: mirror, password_env: D2_PASSWORD }
  d3: { url: "http://$d3_ADDR" }
rules:
  - name: team
    source: src
    repositories: ["team/**"]
    destinations:
      - { registry: d1 }
      - { registry: d2 }
      - { registry: d3, repository: "mirror/{repo}" }
YAML

gets_before=$(registry_count_requests src GET '/v2/.*/blobs/sha256:.*' '200|206')
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync1.out" 2>"$TEST_TMP/sync1.err" || fail "first sync failed: $(cat "$TEST_TMP/sync1.err")"
# The summary is on stdout, the progress on stderr.
grep -q '^sync complete' "$TEST_TMP/sync1.out" || fail "no summary line: $(tail -3 "$TEST_TMP/sync1.out")"
assert_eq "$(grep -c '^complete ' "$TEST_TMP/sync1.err")" 9 "3 images x 3 destinations complete"
for img in web:v1 api:v1 multi:v2; do
  name=${img%%:*}
  want=$(jq -r .digest "$TEST_TMP/$name.json")
  assert_eq "$(skopeo_raw "$d1_ADDR/team/$img" | digest_of)" "$want" "d1 team/$img"
  assert_eq "$(skopeo_raw "$d2_ADDR/team/$img" --creds mirror:d2-secret-pw | digest_of)" "$want" "d2 team/$img"
  assert_eq "$(skopeo_raw "$d3_ADDR/mirror/team/$img" | digest_of)" "$want" "d3 mirror/team/$img"
done
fallback=$(jq -r .referrers_tag "$TEST_TMP/multi.json")
assert_eq "$(skopeo_raw "$d3_ADDR/mirror/team/multi:$fallback" | jq '.manifests | length')" 2 "referrers replicated"
code=$(curl -s -o /dev/null -w '%{http_code}' "$d1_URL/v2/scratch/tags/list")
assert_eq "$code" 404 "a repository no rule selects is not replicated"
if grep -q d2-secret-pw "$TEST_TMP/sync1.err"; then fail "password in output"; fi
# A sync's own poll is the source's answer: each tag is HEADed once at the
# source (the poll's), not again before its tag is put at the destinations.
for ref in team/web/manifests/v1 team/api/manifests/v1 team/multi/manifests/v2; do
  assert_eq "$(registry_count_requests src HEAD "/v2/$ref")" 1 "source HEADs of $ref in the first sync"
done
pass "three destinations converge (Basic auth, mirror/{repo} mapping, referrers)"

# The spool: each blob is read from the source once, whatever the number of
# destinations (three here).
unique=$(jq -s '[.[].blobs[].digest] | unique | length' "$TEST_TMP/web.json" "$TEST_TMP/api.json" "$TEST_TMP/multi.json")
# Every blob had to be read at least once (all three destinations were
# empty), so the wait must succeed; its access-log line can trail the sync by
# a moment. Then no more than once: exactly the unique count.
registry_wait_requests src GET '/v2/.*/blobs/sha256:.*' $((gets_before + unique)) 10 '200|206' >/dev/null ||
  fail "the source log shows $(($(registry_count_requests src GET '/v2/.*/blobs/sha256:.*' '200|206') - gets_before)) blob GETs, not every one of the $unique blobs"
for digest in $(jq -r '.blobs[].digest' "$TEST_TMP/web.json" "$TEST_TMP/api.json" "$TEST_TMP/multi.json" | sort -u); do
  n=$(registry_count_requests src GET "/v2/.*/blobs/$digest" '200|206')
  assert_eq "$n" 1 "source GETs of blob $digest"
done
gets=$(($(registry_count_requests src GET '/v2/.*/blobs/sha256:.*' '200|206') - gets_before))
assert_eq "$gets" "$unique" "source blob GETs for $unique unique blobs and 3 destinations"
pass "each source blob read exactly once for three destinations"

# Shared base layers: uploaded once per destination registry, mounted or
# skipped for the second repository.
for d in d1 d2 d3; do
  for b in $(jq -r '.blobs[] | select(.size > 200000) | .digest' "$TEST_TMP/web.json"); do
    if jq -e --arg b "$b" '.blobs | map(.digest) | index($b)' "$TEST_TMP/api.json" >/dev/null; then
      n=$(registry_count_requests "$d" PUT "/v2/.*/blobs/uploads/.*digest=$b.*" 201)
      [ "$n" -le 1 ] || fail "$d: shared layer $b uploaded $n times"
    fi
  done
done
pass "shared layers uploaded at most once per destination registry"

# A second sync: nothing to do, nothing sent to the destinations — no request
# of any method (GET and HEAD included), whatever its path or status.
for d in d1 d2 d3; do
  eval "before_$d=\$(registry_count_requests $d '.*' '.*' '' 'ferry.*')"
done
src_before=$(registry_count_requests src '.*' '.*' '' 'ferry.*')
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync2.out" 2>"$TEST_TMP/sync2.err" || fail "second sync failed: $(cat "$TEST_TMP/sync2.err")"
grep -q '^sync complete' "$TEST_TMP/sync2.out" || fail "second sync: no summary line: $(cat "$TEST_TMP/sync2.out")"
# The source was polled (so the check below is not vacuous: the sync ran).
(($(registry_count_requests src '.*' '.*' '' 'ferry.*') > src_before)) || fail "the second sync did not even poll the source"
sleep 0.3 # the access-log line is written as the handler returns
for d in d1 d2 d3; do
  eval "b=\$before_$d"
  n=$(registry_count_requests $d '.*' '.*' '' 'ferry.*')
  if [[ "$n" != "$b" ]]; then
    registry_access_log "$d" | tail -n $((n - b)) >&2
    fail "$d: the second sync sent $((n - b)) requests (above), want none"
  fi
done
pass "a second sync sends nothing and exits 0"

# A new tag at the source is replicated by the next sync. Before it, an
# entry added by hand says team/api:ghost names api's image: a message, not
# the sync's own look, so its jobs ask the source (which has no such tag)
# and leave it alone: no destination sees a PUT of team/api:ghost.
fixturegen push --registry "$src_ADDR" --repo team/web --tag v2 --seed 5 --layers 1 --layer-size 50K --compact >"$TEST_TMP/web2.json"
"$FERRY" journal -c "$TEST_TMP/ferry.yaml" append --source src --repo team/api --tag ghost \
  --digest "$(jq -r .digest "$TEST_TMP/api.json")" --media-type "$(jq -r .media_type "$TEST_TMP/api.json")" >/dev/null ||
  fail "cannot append the false entry"
for d in d1 d2 d3; do
  eval "puts_$d=\$(registry_count_requests $d PUT '/v2/(mirror/)?team/api/manifests/ghost')"
done
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/sync3.err" || fail "third sync failed"
assert_eq "$(grep -c '^complete .*team/web@.* tag v2 ' "$TEST_TMP/sync3.err")" 3 "one new job per destination"
assert_eq "$(grep -c '^superseded .*team/api@.* tag ghost ' "$TEST_TMP/sync3.err")" 3 "the false entry's jobs, left alone"
for d in d1 d2 d3; do
  eval "b=\$puts_$d"
  assert_eq "$(registry_count_requests $d PUT '/v2/(mirror/)?team/api/manifests/ghost')" "$b" "$d: PUTs of team/api:ghost after a false entry"
done
assert_eq "$(registry_count_requests src HEAD /v2/team/web/manifests/v2)" 1 "source HEADs of team/web:v2 (the poll's)"
assert_eq "$(skopeo_raw "$d3_ADDR/mirror/team/web:v2" | digest_of)" "$(jq -r .digest "$TEST_TMP/web2.json")" "new tag replicated"
pass "a new tag is replicated by the next sync"
