#!/usr/bin/env bash
# disk: the spool's filesystem fills up. <data_dir>/spool is a 24 MiB tmpfs
# (the spool is used because the source's rule names two destinations) and an
# image with a 48 MiB layer is pushed. The spool is an economy, not a need: it
# has no room for the layer (the reservation fails before a byte is written),
# Ferry says so clearly, naming the blob, and streams that layer from the
# source to each destination instead. Nothing FAILS, no spool file ever holds
# bytes that do not match its name, small images keep going through the
# spool, and once the filesystem is grown (space returns) the next big layer
# goes through the spool again: read from the source once for both
# destinations. `ferry verify` is clean at the end. The source's reads of
# each big layer are counted in its access log (GETs answered 2xx, by Ferry):
# exactly 2 while the spool is full (one stream per destination), exactly 1
# once it has room.
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
chaos_faults "the spool on a 24 MiB tmpfs, a $big layer to 2 destinations"
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
    hex=${hex%%.*}
    [[ "$hex" =~ ^[0-9a-f]{64}$ ]] || continue
    if [[ "$(sha256sum <"$f" | cut -d' ' -f1)" != "$hex" ]]; then
      # A download may have started since the status was read: look again.
      chaos_api /v1/status | jq -e '[.destinations[].in_flight] | add == 0' >/dev/null || return 0
      echo "spool file $hex holds other content ($(stat -c %s "$f") bytes)" >>"$TEST_TMP/unsound"
      unsound=1
    fi
  done < <(find "$spool" -type f)
}

# complete REPO : the image is COMPLETE at both destinations
complete() {
  spool_sound
  chaos_api "/v1/images?repository=$1&tag=v1" |
    jq -e '[.destinations[] | select(.state == "COMPLETE")] | length == 2' >/dev/null
}
# source_gets DIGEST : GETs of that blob the source answered
source_gets() {
  registry_count_requests src GET "/v2/.*/blobs/$1" '2..' 'ferry.*'
}

fixturegen push --registry "$src_ADDR" --repo disk/big --tag v1 --seed disk-big --layers 1 \
  --layer-size "$big" --compact >"$TEST_TMP/big.json"
big_digest=$(jq -r .digest "$TEST_TMP/big.json")
big_layer=$(jq -r '[.blobs[] | select(.size > 1000000)][0].digest' "$TEST_TMP/big.json")
# Small images fit, and go through the spool meanwhile.
for ((n = 0; n < small; n++)); do
  chaos_push "disk/small$n" v1 "disk-small-$n" --layers 1 --layer-size 1M >/dev/null
done
wait_until 120 complete disk/big ||
  fail "the big image did not replicate while the spool was full: $(chaos_api "/v1/images?repository=disk/big&tag=v1" | jq -c '[.destinations[] | {name, state, last_error}]')"
small_ok=1
for ((n = 0; n < small; n++)); do
  wait_until 60 complete "disk/small$n" || small_ok=0
done
spool_sound
warning=$(grep -a 'spool full' "$TEST_TMP/ferry.log" | grep -a "$big_layer" | head -n 1 || true)
note "while full: ${warning#*warn }"
# The access-log line is written as the handler returns: let the reads land.
registry_wait_requests src GET "/v2/.*/blobs/$big_layer" 2 5 '2..' 'ferry.*' || true
full_gets=$(source_gets "$big_layer")

# Space returns: the filesystem grows; the next big layer goes through the spool.
mount -o remount,size=256m "$spool" || fail "cannot grow the tmpfs"
fixturegen push --registry "$src_ADDR" --repo disk/big2 --tag v1 --seed disk-big-2 --layers 1 \
  --layer-size "$big" --compact >"$TEST_TMP/big2.json"
big2_layer=$(jq -r '[.blobs[] | select(.size > 1000000)][0].digest' "$TEST_TMP/big2.json")
big2_ok=0
wait_until 120 complete disk/big2 && big2_ok=1
registry_wait_requests src GET "/v2/.*/blobs/$big2_layer" 2 2 '2..' 'ferry.*' || true
roomy_gets=$(source_gets "$big2_layer")
converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" 90 && converged=1
spool_sound
failed_total=$(chaos_failed_total)

figure "disk spool_tmpfs=24MiB big_layer=$big source_reads_of_the_layer_while_full=$full_gets source_reads_once_space_returned=$roomy_gets"
figure "disk small_images_replicated_while_full=$small_ok spool_checks=$spool_checks corrupt_spool_files=$unsound converged=$converged failed_jobs=$failed_total"
assert_eq "$full_gets" 2 "while the spool was full, the big layer was streamed from the source once per destination"
[[ -n "$warning" ]] || fail "no warning names the big layer when the spool had no room"
grep -q 'No space left on device' <<<"$warning" || fail "the warning does not say the disk is full: $warning"
assert_eq "$unsound" 0 "no corrupt spool file ($(head -n 2 "$TEST_TMP/unsound" 2>/dev/null))"
((small_ok)) || fail "small images did not replicate while the spool was full"
assert_eq "$failed_total" 0 "no FAILED job"
((big2_ok)) || fail "the second big image did not replicate once space returned"
assert_eq "$roomy_gets" 1 "once space returned, the big layer was read from the source once for two destinations"
if grep -a 'spool full' "$TEST_TMP/ferry.log" | grep -aq "$big2_layer"; then
  fail "the spool was still full for the second layer after space returned"
fi
((converged)) || fail "destinations do not match the source: $(head -n 3 "$TEST_TMP/verify.out")"
assert_eq "$(curl -s "$d1_URL/v2/disk/big/manifests/v1" -H 'Accept: application/vnd.oci.image.manifest.v1+json' | digest_of)" "$big_digest" "the big image at d1"
chaos_row "the spool on a 24 MiB tmpfs, a $(sed 's/M$/ MiB/' <<<"$big") layer to 2 destinations" \
  "**pass**: a warning naming the spool and the blob (\`No space left on device\`), the layer streamed from the source to each destination instead ($full_gets source reads, from its access log), no FAILED job, no corrupt spool file in $spool_checks checks, $small small images kept going through the spool; once the tmpfs grew, the next $(sed 's/M$/ MiB/' <<<"$big") layer was read from the source $roomy_gets time for both"
pass "disk: a full spool is said clearly and bypassed (nothing failed, nothing corrupt); the spool is used again once space returns"
