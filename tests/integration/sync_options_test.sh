#!/usr/bin/env bash
# Rule options and a destination that is down: overwrite: false leaves an
# existing tag alone; a one-platform rule copies that platform's manifest;
# with one destination stopped, the other gets its images on time, and the
# stopped one catches up after it returns, with nothing FAILED.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start d1
registry_start d2
fixturegen push --registry "$src_ADDR" --repo keep/app --tag t --seed 1 --layers 1 --layer-size 10K --compact >"$TEST_TMP/keep-src.json"
fixturegen push --registry "$d1_ADDR" --repo keep/app --tag t --seed 2 --layers 1 --layer-size 10K --compact >"$TEST_TMP/keep-dst.json"
fixturegen push --registry "$src_ADDR" --repo plat/app --tag v1 --seed 3 --platforms linux/amd64,linux/arm64 \
  --layers 1 --layer-size 10K --compact >"$TEST_TMP/plat.json"
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
rules:
  - { name: keep, source: src, repositories: ["keep/**"], overwrite: false, destinations: [{ registry: d1 }] }
  - { name: plat, source: src, repositories: ["plat/**"], platforms: [linux/arm64], destinations: [{ registry: d1 }] }
YAML
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" 2>"$TEST_TMP/sync.err" || fail "sync failed: $(cat "$TEST_TMP/sync.err")"
assert_eq "$(skopeo_raw "$d1_ADDR/keep/app:t" | digest_of)" "$(jq -r .digest "$TEST_TMP/keep-dst.json")" "overwrite: false kept the tag"
src_digest=$(jq -r .digest "$TEST_TMP/keep-src.json")
assert_eq "$(skopeo_raw "$d1_ADDR/keep/app@$src_digest" | digest_of)" "$src_digest" "the manifest itself arrived by digest"
arm=$(skopeo_raw "$src_ADDR/plat/app:v1" | jq -r '.manifests[] | select(.platform.architecture=="arm64") | .digest')
assert_eq "$(skopeo_raw "$d1_ADDR/plat/app:v1" | digest_of)" "$arm" "platform rule copied the arm64 manifest"
pass "overwrite: false and a one-platform rule"

# A destination that is down for a while, under ferry serve.
port=$(free_port)
registry_stop d2
cat >"$TEST_TMP/serve.yaml" <<YAML
data_dir: $TEST_TMP/serve-data
listen: 127.0.0.1:$port
poll_interval: 1s
retry: { attempts: 30, base: 200ms, max: 1s }
circuit: { failures: 2, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: dr, source: src, repositories: ["live/**"], destinations: [{ registry: d1, repository: "a/{repo}" }, { registry: d2 }] }
YAML
ferry_serve_start ferry "$TEST_TMP/serve.yaml" "$port"
fixturegen push --registry "$src_ADDR" --repo live/app --tag v1 --seed 9 --layers 2 --layer-size 50K --compact >"$TEST_TMP/live.json"
want=$(jq -r .digest "$TEST_TMP/live.json")
t0=$SECONDS
wait_until 15 bash -c "curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' $d1_URL/v2/a/live/app/manifests/v1" ||
  fail "the healthy destination did not get the image while the other was down"
note "healthy destination done in $((SECONDS - t0)) s with d2 down"
sleep 4
registry_restart d2
wait_until 30 bash -c "curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' $d2_URL/v2/live/app/manifests/v1" ||
  fail "the stopped destination did not catch up"
assert_eq "$(skopeo_raw "$d2_ADDR/live/app:v1" | digest_of)" "$want" "caught up by digest"
if grep -q 'circuit open dest=d2' "$TEST_TMP/ferry.log"; then note "the circuit opened for d2 while it was down"; fi
if grep 'job failed dest=' "$TEST_TMP/ferry.log" | grep -qv retrying; then
  fail "a job FAILED: $(grep 'job failed dest=' "$TEST_TMP/ferry.log" | grep -v retrying | head -1)"
fi
pass "a destination down for a while catches up, with nothing FAILED"

# rate_limit: a destination limited to 1 MiB/s takes about 4 s for a 4 MiB
# layer; the same sync without the limit takes well under that.
registry_start d3
fixturegen push --registry "$src_ADDR" --repo slow/app --tag v1 --seed 21 --layers 1 --layer-size 4M --compact >"$TEST_TMP/slow.json"
rate_config() { # FILE DATA_DIR RATE NAME
  cat >"$1" <<YAML
data_dir: $2
listen: 127.0.0.1:$(free_port)
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  d3: { url: "http://$d3_ADDR", rate_limit: $3 }
rules:
  - { name: slow, source: src, repositories: ["slow/**"], destinations: [{ registry: d3, repository: "{repo}-$4" }] }
YAML
}
rate_config "$TEST_TMP/fast.yaml" "$TEST_TMP/fast-data" 0 fast
t0=$EPOCHREALTIME
"$FERRY" sync -c "$TEST_TMP/fast.yaml" 2>"$TEST_TMP/fast.err" || fail "unlimited sync failed: $(cat "$TEST_TMP/fast.err")"
fast=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
rate_config "$TEST_TMP/slow.yaml" "$TEST_TMP/slow-data" 1M slow
t0=$EPOCHREALTIME
"$FERRY" sync -c "$TEST_TMP/slow.yaml" 2>"$TEST_TMP/slow.err" || fail "rate-limited sync failed: $(cat "$TEST_TMP/slow.err")"
slow=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
want=$(jq -r .digest "$TEST_TMP/slow.json")
assert_eq "$(skopeo_raw "$d3_ADDR/slow/app-slow:v1" | digest_of)" "$want" "rate-limited copy arrived"
note "4 MiB layer: ${fast} s unlimited, ${slow} s at 1 MiB/s"
# Download and upload share the bucket of the registry they talk to; the
# destination's bucket alone bounds the upload to ~4 s (a 64 KiB burst aside).
awk -v s="$slow" 'BEGIN { exit !(s >= 3.2) }' || fail "rate_limit 1M moved 4 MiB in ${slow} s"
awk -v s="$slow" 'BEGIN { exit !(s <= 12) }' || fail "rate_limit 1M took ${slow} s for 4 MiB"
awk -v f="$fast" 'BEGIN { exit !(f < 2.5) }' || fail "the unlimited sync took ${fast} s"
pass "rate_limit bounds a destination's bytes per second"
