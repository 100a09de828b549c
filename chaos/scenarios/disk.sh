#!/usr/bin/env bash
# disk: the spool's filesystem fills up. <data_dir>/spool is a 24 MiB tmpfs
# (the spool is used because the source's rule names two destinations) and a
# 48 MiB layer is pushed: its jobs fail with a clear error (no space, naming
# the spool), no spool file ever holds bytes that do not match its name,
# small images still replicate, and once the filesystem is grown (space
# returns) a retry completes everything and `ferry verify` is clean.
# Needs root (mount); the tmpfs is unmounted at exit, by the path made here.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry
[[ "$(id -u)" == 0 ]] || fail "the disk scenario mounts a tmpfs: run it as root"

big=48M small=4
if chaos_short; then
  big=40M small=2
fi
spool="$TEST_TMP/data/spool"
mkdir -p "$spool"
mount -t tmpfs -o size=24m,mode=0700 ferry-chaos-spool "$spool" || fail "cannot mount a tmpfs on $spool"
on_exit "umount '$spool' 2>/dev/null || umount -l '$spool'"

FERRY_PORT=$(free_port)
registry_start src
registry_start d1
registry_start d2
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 1s
retry: { attempts: 3, base: 300ms, max: 1s }
circuit: { failures: 1000, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
sed -e "s#^data_dir: .*#data_dir: $TEST_TMP/verify-data#" "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

# spool_sound : every file in the spool, while no job runs, hashes to its name.
unsound=0 spool_checks=0
spool_sound() {
  local f hex
  chaos_api /v1/status | jq -e '[.destinations[].in_flight] | add == 0' >/dev/null || return 0
  spool_checks=$((spool_checks + 1))
  while IFS= read -r f; do
    hex=$(basename "$f")
    [[ "$hex" =~ ^[0-9a-f]{64}$ ]] || continue
    if [[ "$(sha256sum <"$f" | cut -d' ' -f1)" != "$hex" ]]; then
      # A download may have started since the status was read: look again.
      chaos_api /v1/status | jq -e '[.destinations[].in_flight] | add == 0' >/dev/null || return 0
      echo "spool file $hex holds other content ($(stat -c %s "$f") bytes)" >>"$TEST_TMP/unsound"
      unsound=1
    fi
  done < <(find "$spool" -type f)
}

fixturegen push --registry "$src_ADDR" --repo disk/big --tag v1 --seed disk-big --layers 1 \
  --layer-size "$big" --compact >"$TEST_TMP/big.json"
big_digest=$(jq -r .digest "$TEST_TMP/big.json")
big_layer=$(jq -r '[.blobs[] | select(.size > 1000000)][0].digest' "$TEST_TMP/big.json")
failed_both() {
  spool_sound
  chaos_api "/v1/images?repository=disk/big&tag=v1" |
    jq -e '[.destinations[] | select(.state == "FAILED")] | length == 2' >/dev/null
}
wait_until 90 failed_both || fail "the big image's jobs did not FAIL: $(chaos_api "/v1/images?repository=disk/big&tag=v1" | jq -c '[.destinations[] | {name, state, last_error}]')"
error=$(chaos_api /v1/failures | jq -r '.failures[0].last_error')
note "while full: $error"
# Small images fit, and still replicate meanwhile.
small_ok=0
for ((n = 0; n < small; n++)); do
  chaos_push "disk/small$n" v1 "disk-small-$n" --layers 1 --layer-size 1M >/dev/null
done
small_done() {
  spool_sound
  local n
  for ((n = 0; n < small; n++)); do
    chaos_api "/v1/images?repository=disk/small$n&tag=v1" |
      jq -e '[.destinations[] | select(.state == "COMPLETE")] | length == 2' >/dev/null || return 1
  done
}
wait_until 60 small_done && small_ok=1
spool_sound

# Space returns: the filesystem grows; a retry completes the big image.
mount -o remount,size=256m "$spool" || fail "cannot grow the tmpfs"
curl -sf -X POST -H 'Content-Type: application/json' -d '{"destination": "d1"}' "http://127.0.0.1:$FERRY_PORT/v1/retry" >/dev/null
curl -sf -X POST -H 'Content-Type: application/json' -d '{"destination": "d2"}' "http://127.0.0.1:$FERRY_PORT/v1/retry" >/dev/null
converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" 90 && converged=1
spool_sound
failed_now=$(chaos_api /v1/status | jq '[.destinations[].failed] | add')

figure "disk spool_tmpfs=24MiB big_layer=$big clear_error=\"$error\""
figure "disk small_images_replicated_while_full=$small_ok spool_checks=$spool_checks corrupt_spool_files=$unsound converged_after_space_returned=$converged failed_after=$failed_now"
# Every attempt of the big image's jobs failed saying why, naming the blob.
grep -a 'job failed' "$TEST_TMP/ferry.log" | grep -a 'repo=disk/big' >"$TEST_TMP/big-errors.txt" || true
unclear=$(grep -avc 'No space left on device' "$TEST_TMP/big-errors.txt" || true)
figure "disk failed_attempts=$(wc -l <"$TEST_TMP/big-errors.txt") attempts_without_a_clear_error=$unclear"
grep -q 'No space left on device' <<<"$error" || fail "the error does not say the disk is full: $error"
grep -q "$big_layer" <<<"$error" || fail "the error does not name the blob: $error"
assert_eq "$unclear" 0 "every failed attempt says the disk is full ($(grep -av 'No space left on device' "$TEST_TMP/big-errors.txt" | head -n 1 | cat -v))"
assert_eq "$unsound" 0 "no corrupt spool file ($(head -n 2 "$TEST_TMP/unsound" 2>/dev/null))"
((small_ok)) || fail "small images did not replicate while the spool was full"
((converged)) || fail "no convergence once space returned: $(head -n 3 "$TEST_TMP/verify.out")"
assert_eq "$failed_now" 0 "nothing FAILED once space returned"
assert_eq "$(curl -s "$d1_URL/v2/disk/big/manifests/v1" -H 'Accept: application/vnd.oci.image.manifest.v1+json' | digest_of)" "$big_digest" "the big image at d1"
pass "disk: a clear error while full, no corrupt spool file, replication resumed when space returned"
