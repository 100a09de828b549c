#!/usr/bin/env bash
# Registries restarted in the middle of transfers: the destination killed
# during a monolithic upload (the upload starts over), during a chunked upload
# (its status asked, then resumed or started over), and the source killed during a download
# (resumed with a Range request). Every copy ends complete and verified.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 1 --layer-size 300M --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")
layer=$(jq -r '[.blobs[] | select(.size > 100000000)][0].digest' "$TEST_TMP/app.json")

# io_bytes PID FIELD : the process's rchar or wchar (/proc/PID/io): bytes it
# has read or written through system calls, sockets included
io_bytes() {
  sed -n "s/^$2: //p" "/proc/$1/io"
}

# crash_during NAME VICTIM METHOD PATH COUNT IO -- FERRY_ARGS...: start a
# copy; once VICTIM has logged COUNT such requests, wait until it has moved
# another 48 MiB through its sockets (IO: rchar for a destination receiving
# the layer, wchar for a source sending it), kill -9 it, restart it a second
# later, and require the copy to finish complete after retrying. Waiting for
# the bytes, not for a fixed time, is what puts the kill in the middle of the
# layer's transfer: after a fixed sleep a busy machine could still be
# before the transfer (so nothing was resumed) or a fast one past it.
crash_during() {
  local name=$1 victim=$2 method=$3 path=$4 count=$5 io=$6
  shift 7
  start_bg "$name" bash -c 'exec "$@" >"$0.json"' "$TEST_TMP/$name" \
    timeout 300 "$FERRY" copy --json --no-cache --retries 10 "$@"
  local pid_var="${name}_PID"
  registry_wait_requests "$victim" "$method" "$path" "$count" 120 || fail "$name: never saw $method $path"
  local vpid=${_ITEST_PIDS[registry:$victim]} base
  base=$(io_bytes "$vpid" "$io")
  # shellcheck disable=SC2317 # called through wait_until
  _moved() { (($(io_bytes "$vpid" "$io") - base >= 48 * 1024 * 1024)); }
  wait_until 120 _moved || fail "$name: $victim never moved 48 MiB after $method $path"
  registry_stop "$victim" --kill
  sleep 1
  registry_restart "$victim"
  local rc=0
  wait "${!pid_var}" || rc=$?
  assert_eq "$rc" 0 "$name: copy exit status ($(cat "$TEST_TMP/$name.log"))"
  jq -e '.ok' "$TEST_TMP/$name.json" >/dev/null || fail "$name: $(cat "$TEST_TMP/$name.json")"
  local retries
  retries=$(jq -r .retries "$TEST_TMP/$name.json")
  [ "$retries" -gt 0 ] || fail "$name: nothing was retried, so the crash missed the transfer"
  note "$name: $retries retries"
}

crash_during mono dst POST '/v2/mono/blobs/uploads/' 2 rchar -- "$src_ADDR/app:v1" "$dst_ADDR/mono:v1"
assert_eq "$(skopeo_raw "$dst_ADDR/mono:v1" | digest_of)" "$want" "mono: digest"
assert_eq "$(curl -s "$dst_URL/v2/mono/blobs/$layer" | digest_of)" "$layer" "mono: layer content"
pass "destination killed during a monolithic upload: started over, complete"

crash_during chunked dst PATCH '/v2/chunked/blobs/uploads/.*' 4 rchar -- --chunk-size 16M "$src_ADDR/app:v1" "$dst_ADDR/chunked:v1"
assert_eq "$(skopeo_raw "$dst_ADDR/chunked:v1" | digest_of)" "$want" "chunked: digest"
# After the crash Ferry asks the upload URL where the session stands (GET,
# for its Range). Distribution 2.8 answers 404 for a session whose last PATCH
# was cut off (its hash state no longer matches the data), and Ferry then
# starts a new session: either way the copy completes.
checks=$(registry_count_requests dst GET '/v2/chunked/blobs/uploads/.*' '204|404')
[ "$checks" -ge 1 ] || fail "chunked: the upload status was never asked after the crash"
pass "destination killed during a chunked upload: status asked, upload completed ($checks checks)"

crash_during source src HEAD "/v2/app/blobs/$layer" 1 wchar -- --no-referrers "$src_ADDR/app:v1" "$dst_ADDR/resumed:v1"
assert_eq "$(skopeo_raw "$dst_ADDR/resumed:v1" | digest_of)" "$want" "source crash: digest"
ranged=$(registry_count_requests src GET "/v2/app/blobs/$layer" 206)
[ "$ranged" -ge 1 ] || fail "source crash: the download was not resumed with a Range request"
pass "source killed during a download: resumed with Range, complete"
