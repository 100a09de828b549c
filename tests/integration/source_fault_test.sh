#!/usr/bin/env bash
# A fault at the source is not the destination's fault. Three images of one
# repository (app:a, app:b, app:c, a shared base layer and a layer of their
# own each) lose their own layer at the source (deleted, as a garbage
# collection would); a healthy image (good:v1) sits in another repository.
#   1. `ferry sync` returns promptly (well under a minute: no 30 s circuit
#      probes), exits 1, copies good:v1, lists the three app images FAILED on
#      stdout with a reason that names the source, and never opens the
#      destination's circuit ("circuit open" is not in its log).
#   2. app:a is then deleted at the source: the next sync ends its job
#      SUPERSEDED (gone at the source), app:b and app:c stay FAILED, exit 1;
#      `ferry status` (through `ferry serve`) says the same.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src --delete
registry_start dst
for t in a b c; do
  fixturegen push --registry "$src_ADDR" --repo app --tag "$t" --seed "app-$t" --layers 1 --layer-size 8K \
    --base-layers 1 --base-seed shared --base-layer-size 8K --compact >"$TEST_TMP/$t.json"
done
fixturegen push --registry "$src_ADDR" --repo good --tag v1 --seed good --layers 1 --layer-size 8K \
  --base-layers 1 --base-seed shared --base-layer-size 8K --compact >"$TEST_TMP/good.json"
declare -A DIGEST
for t in a b c good; do
  DIGEST[$t]=$(jq -r .digest "$TEST_TMP/$t.json")
done

# Each app image's own layer: the layer no other app image has.
layers() { jq -r '.blobs[] | select(.media_type | test("layer")) | .digest' "$@"; }
for t in a b c; do
  others=()
  for o in a b c; do
    [[ "$o" == "$t" ]] || others+=("$TEST_TMP/$o.json")
  done
  own=$(comm -23 <(layers "$TEST_TMP/$t.json" | sort -u) <(layers "${others[@]}" | sort -u))
  assert_eq "$(wc -w <<<"$own")" 1 "app:$t has one layer of its own"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/app/blobs/$own")
  assert_eq "$code" 202 "app:$t's own layer deleted at the source"
  code=$(curl -s -o /dev/null -w '%{http_code}' -I "$src_URL/v2/app/blobs/$own")
  assert_eq "$code" 404 "app:$t's own layer is gone at the source"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$src_URL/v2/app/manifests/$t")
  assert_eq "$code" 200 "app:$t still names its manifest at the source"
done

# Few failures open the circuit (3 in a row), and it stays open 30 s: the old
# engine took every source fault for the destination's.
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
circuit: { failures: 3, open_for: 30s }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML

# sync_story N: what sync N's log says of circuits and failed attempts
sync_story() {
  echo "$(grep -c 'circuit open' "$TEST_TMP/s$1.err") 'circuit open' lines," \
    "$(grep -c 'job failed' "$TEST_TMP/s$1.err") failed attempts; $(grep -m 1 'circuit open' "$TEST_TMP/s$1.err")"
}

# run_sync N [ARGS...]: ferry sync (killed at 150 s); stdout sN.out, stderr
# sN.err, status in rc; fails unless it returned within 60 s.
run_sync() {
  local n=$1 t0 ms
  shift
  t0=${EPOCHREALTIME/[.,]/}
  rc=0
  timeout 150 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" "$@" >"$TEST_TMP/s$n.out" 2>"$TEST_TMP/s$n.err" || rc=$?
  ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
  note "sync $n: exit $rc after $ms ms"
  if ((rc == 124)); then
    fail "sync $n did not return within 150 s (killed); stderr: $(sync_story "$n")"
  fi
  ((ms < 60000)) ||
    fail "sync $n took $ms ms (want < 60 s); stderr: $(sync_story "$n")"
}

# failed_line FILE TAG: the FAILED line of app:TAG in FILE (stdout of a sync).
failed_line() {
  grep -E '(^|[^A-Za-z])FAILED([^A-Za-z]|$)' "$1" | grep -F dst | grep -E "(^|[^A-Za-z0-9_/-])app([@: ]|$)" |
    grep -E "${DIGEST[$2]}|app:$2([^A-Za-z0-9._-]|$)|tag $2([^A-Za-z0-9._-]|$)" || true
}

no_circuit() { # N
  if grep -h 'circuit open' "$TEST_TMP/s$1.out" "$TEST_TMP/s$1.err"; then
    fail "sync $1: a source fault opened the destination's circuit"
  fi
}

run_sync 1
assert_eq "$rc" 1 "sync with three broken images exits 1"
assert_eq "$(skopeo_raw "$dst_ADDR/good:v1" | digest_of)" "${DIGEST[good]}" "good:v1 replicated"
for t in a b c; do
  line=$(failed_line "$TEST_TMP/s1.out" "$t")
  [[ -n "$line" ]] || fail "app:$t is not listed FAILED on stdout: $(cat "$TEST_TMP/s1.out")"
  grep -qi 'source' <<<"$line" || fail "the reason for app:$t does not name the source: $line"
done
grep -qE '^sync finished in [0-9.]+ s: 3 failed$' "$TEST_TMP/s1.out" ||
  fail "no summary line on stdout: $(cat "$TEST_TMP/s1.out")"
no_circuit 1
pass "three images broken at the source: FAILED promptly, named, the destination's circuit untouched"

# app:a is gone at the source now (its manifest deleted, so its tag too).
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/app/manifests/${DIGEST[a]}")
assert_eq "$code" 202 "app:a deleted at the source"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "$src_URL/v2/app/manifests/a")
assert_eq "$code" 404 "app:a is gone at the source"

run_sync 2
assert_eq "$rc" 1 "sync with app:b and app:c still broken exits 1"
for t in b c; do
  line=$(failed_line "$TEST_TMP/s2.out" "$t")
  [[ -n "$line" ]] || fail "sync 2: app:$t is not listed FAILED on stdout: $(cat "$TEST_TMP/s2.out")"
  grep -qi 'source' <<<"$line" || fail "sync 2: the reason for app:$t does not name the source: $line"
done
line=$(failed_line "$TEST_TMP/s2.out" a)
[[ -z "$line" ]] || fail "sync 2: app:a, gone at the source, is still listed FAILED: $line"
grep -qE '^sync finished in [0-9.]+ s: 2 failed$' "$TEST_TMP/s2.out" ||
  fail "sync 2: summary line on stdout: $(cat "$TEST_TMP/s2.out")"
no_circuit 2
pass "the image deleted at the source is no longer FAILED; the others still are"

# The job records, through the daemon: app:a SUPERSEDED, app:b and app:c FAILED.
port=$(sed -n 's/^listen: 127.0.0.1:\([0-9]*\)$/\1/p' "$TEST_TMP/ferry.yaml")
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
# image_state IMAGE STATE REGEX: wait (bounded) until `ferry status --image
# IMAGE --json` says STATE at dst with a last_error matching REGEX.
image_state() {
  local image=$1 want=$2 re=$3
  # shellcheck disable=SC2317 # called through wait_until
  _image_is() {
    "$FERRY" status -c "$TEST_TMP/ferry.yaml" --image "$image" --json >"$TEST_TMP/image.json" 2>&1 || true
    jq -e --arg s "$want" --arg re "$re" \
      '.destinations[] | select(.name == "dst") | .state == $s and ((.last_error // "") | test($re; "i"))' \
      "$TEST_TMP/image.json" >/dev/null 2>&1
  }
  wait_until 30 _image_is ||
    fail "ferry status --image $image: want $want with an error matching /$re/, got $(jq -c '.destinations // .' "$TEST_TMP/image.json" 2>/dev/null || cat "$TEST_TMP/image.json")"
}
image_state "app@${DIGEST[a]}" SUPERSEDED 'gone at the source|superseded'
image_state app:b FAILED source
image_state app:c FAILED source
image_state good:v1 COMPLETE ''
pass "ferry status: app:a SUPERSEDED (gone at the source), app:b and app:c FAILED naming the source"
