#!/usr/bin/env bash
# Every registry client is built by clients_open() (replication/clients.c)
# from its registry's config; this checks that a registry's `stall_timeout`
# and `rate_limit` reach the clients of each user, through the fault proxy:
# 1. `ferry verify`, a destination behind the proxy blackholing manifest
#    HEADs, `stall_timeout: 2s`: each stalled request is given up in about
#    2 s (not libcurl's 120 s default), and the registry is named.
# 2. `ferry serve`'s poller, its source behind the proxy blackholing tag
#    listings, `stall_timeout: 2s`: the round fails in about 2 s a request.
# 3. `rate_limit` caps blob bytes per second (README "Rate limits"); the
#    poller and verify move no blob body (HEADs and manifests only), so it is
#    the engine's clients, a source's and a destination's, that show it: a
#    2 MiB layer copied under `rate_limit: 512KiB` takes at least 3 s, where
#    loopback takes a fraction of one (the proxy in front counts the bytes).
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 1 --layers 1 --layer-size 4K \
  --compact >"$TEST_TMP/app.json"
proxy_start pdst "$dst_ADDR"
proxy_start psrc "$src_ADDR"

now_ms() { date +%s%3N; }

# config FILE SRC_ADDR SRC_EXTRA DST_ADDR DST_EXTRA [POLL_INTERVAL [RULE]]
config() {
  cat >"$1" <<YAML
data_dir: $TEST_TMP/data-$(basename "$1" .yaml)
listen: 127.0.0.1:${port:-$(free_port)}
poll_interval: ${6:-0}
registries:
  src: { url: "http://$2"$3 }
  dst: { url: "http://$4"$5 }
rules:
  - ${7:-"{ name: all, source: src, destinations: [{ registry: dst }] }"}
YAML
}

# ---- 1. ferry verify: a destination that stalls ----
config "$TEST_TMP/direct.yaml" "$src_ADDR" "" "$dst_ADDR" ""
timeout 60 "$FERRY" sync -c "$TEST_TMP/direct.yaml" >/dev/null 2>"$TEST_TMP/sync.err" ||
  fail "sync failed: $(tail -n 3 "$TEST_TMP/sync.err")"
config "$TEST_TMP/verify.yaml" "$src_ADDR" "" "$pdst_ADDR" ", stall_timeout: 2s"
timeout 30 "$FERRY" verify -c "$TEST_TMP/verify.yaml" >/dev/null 2>&1 || fail "verify through the proxy is not clean"
proxy_rules pdst put 'HEAD /manifests/ blackhole'
start=$(now_ms)
rc=0
timeout 30 "$FERRY" verify -c "$TEST_TMP/verify.yaml" >"$TEST_TMP/v.out" 2>"$TEST_TMP/v.err" || rc=$?
elapsed=$(($(now_ms) - start))
stalled=$(proxy_fault_count pdst blackhole)
note "verify: $stalled stalled requests given up in $elapsed ms: $(cat "$TEST_TMP/v.err")"
assert_eq "$rc" 1 "verify exit status with a stalled destination"
grep -q "^ferry verify: registry 'dst' (127.0.0.1:[0-9]*) is unreachable: " "$TEST_TMP/v.err" ||
  fail "the stalled registry is not named: $(cat "$TEST_TMP/v.err")"
((stalled >= 1)) || fail "the proxy stalled no request"
# Each stalled request: at least the 2 s of no byte, well under libcurl's 120 s.
((elapsed >= 1800 * stalled)) || fail "verify gave up $stalled stalled requests in $elapsed ms: before 2 s each"
((elapsed <= 4500 * stalled)) || fail "verify took $elapsed ms for $stalled stalled requests: not the 2 s stall_timeout"
pass "ferry verify gives up a stalled destination request after stall_timeout (2 s), naming it"

# ---- 2. ferry serve's poller: a source that stalls ----
proxy_rules psrc put 'GET /tags/list blackhole'
port=$(free_port)
config "$TEST_TMP/serve.yaml" "$psrc_ADDR" ", stall_timeout: 2s" "$dst_ADDR" "" 30s
start=$(now_ms)
ferry_serve_start ferry "$TEST_TMP/serve.yaml" "$port"
wait_until 30 grep -q 'poller: ' "$TEST_TMP/ferry.log" || fail "the poller reported no failure in 30 s"
elapsed=$(($(now_ms) - start))
stalled=$(proxy_fault_count psrc blackhole)
note "poller: $stalled stalled listings given up in $elapsed ms: $(grep -m1 'poller: ' "$TEST_TMP/ferry.log")"
((stalled >= 1)) || fail "the proxy stalled no listing"
((elapsed >= 1800 * stalled)) || fail "the poller gave up $stalled stalled requests in $elapsed ms: before 2 s each"
((elapsed <= 4500 * stalled + 1500)) ||
  fail "the poller took $elapsed ms for $stalled stalled requests: not the 2 s stall_timeout"
stop_bg ferry
pass "the poller gives up a stalled source listing after stall_timeout (2 s)"

# ---- 3. rate_limit: the engine's source and destination clients ----
proxy_rules psrc delete
proxy_rules pdst delete
fixturegen push --registry "$src_ADDR" --repo big --tag v1 --seed 2 --layers 1 --layer-size 2M \
  --compact >"$TEST_TMP/big.json"
unset port
# copy_timed NAME SRC_ADDR SRC_EXTRA DST_ADDR DST_EXTRA: sync big:v1, print ms.
copy_timed() {
  config "$TEST_TMP/$1.yaml" "$2" "$3" "$4" "$5" 0 \
    "{ name: big, source: src, repositories: [big], destinations: [{ registry: dst, repository: $1 }] }"
  local t0
  t0=$(now_ms)
  timeout 60 "$FERRY" sync -c "$TEST_TMP/$1.yaml" >/dev/null 2>"$TEST_TMP/$1.err" ||
    fail "sync $1 failed: $(tail -n 3 "$TEST_TMP/$1.err")"
  echo $(($(now_ms) - t0))
}
# The 2 MiB went through the proxy in front of the limited registry, in $ms ms.
down0=$(proxy_stats psrc .bytes_to_client)
ms=$(copy_timed from-src "$psrc_ADDR" ", rate_limit: 512KiB" "$dst_ADDR" "")
moved=$(($(proxy_stats psrc .bytes_to_client) - down0))
note "source rate_limit 512KiB: $moved bytes read through the proxy in $ms ms"
((moved >= 2097152)) || fail "the layer was not read through the source's proxy ($moved bytes)"
((ms >= 3000)) || fail "2 MiB read from a source with rate_limit 512KiB in $ms ms: the limit did not apply"
up0=$(proxy_stats pdst .bytes_to_upstream)
ms=$(copy_timed to-dst "$src_ADDR" "" "$pdst_ADDR" ", rate_limit: 512KiB")
moved=$(($(proxy_stats pdst .bytes_to_upstream) - up0))
note "destination rate_limit 512KiB: $moved bytes written through the proxy in $ms ms"
((moved >= 2097152)) || fail "the layer was not written through the destination's proxy ($moved bytes)"
((ms >= 3000)) || fail "2 MiB written to a destination with rate_limit 512KiB in $ms ms: the limit did not apply"
ms=$(copy_timed unlimited "$src_ADDR" "" "$dst_ADDR" "")
note "no rate_limit: 2 MiB layer in $ms ms"
((ms < 3000)) || fail "2 MiB copied without rate_limit in $ms ms: loopback is too slow for this test"
pass "rate_limit bounds the blob bytes per second of a source's and a destination's clients"
