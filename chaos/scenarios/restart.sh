#!/usr/bin/env bash
# restart: in the middle of transfers the source registry is killed (-9),
# then a destination registry is killed, then the same destination is
# restarted gracefully (its requests in flight drain first); each is back a
# second later on the same port and storage. d1 takes chunked uploads
# (chunk_max 1 MiB), d2 monolithic ones; a rate limit on the source keeps
# the big layers in flight. Every job completes with no FAILED one, `ferry
# verify` is clean, and chunked uploads resume: Ferry asks each session's
# status and carries on with the sessions the registry still has
# (Distribution drops a session whose chunk was cut off by a crash; Ferry
# starts that one again). Downloads resume with Range requests.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry
chaos_faults "source and chunked-upload destination killed and restarted mid-transfer"

images=3 layer=64M rounds=2
if chaos_short; then
  images=1 layer=32M rounds=1
fi

FERRY_PORT=$(free_port)
registry_start src
registry_start d1
registry_start d2
for ((n = 0; n < images; n++)); do
  fixturegen push --registry "$src_ADDR" --repo "restart/app$n" --tag v1 --seed "restart-$n" \
    --layers 2 --layer-size "$layer" --compact >"$TEST_TMP/img$n.json"
done
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 2s
retry: { attempts: 8, base: 500ms, max: 4s }
registries:
  src: { url: "http://$src_ADDR", rate_limit: 8MiB }
  d1: { url: "http://$d1_ADDR", upload: { mode: chunked, chunk_max: 1MiB } }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
sed -e "s#^data_dir: .*#data_dir: $TEST_TMP/verify-data#" "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.yaml"
start=$SECONDS
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

# d1_during_uploads : wait until a few more chunks have gone to d1
d1_during_uploads() {
  local patches
  patches=$(registry_count_requests d1 PATCH '/v2/.*/blobs/uploads/.*')
  registry_wait_requests d1 PATCH '/v2/.*/blobs/uploads/.*' $((patches + 4)) 60 ||
    fail "round $round: no chunked upload to d1 in progress"
}
# A graceful stop lets the requests in flight finish (a rolling restart).
sed -i '/^http:/a\  draintimeout: 10s' "$d1_CONFIG"
restarts=0
for ((round = 1; round <= rounds; round++)); do
  d1_during_uploads
  # The source crashes in the middle of downloads (ranged reads resume them).
  registry_stop src --kill
  sleep 1
  registry_restart src
  # The destination crashes in the middle of a chunk: Distribution drops
  # that session, and Ferry must start it again.
  d1_during_uploads
  registry_stop d1 --kill
  sleep 1
  registry_restart d1
  # The destination restarts gracefully between chunks: the sessions are
  # intact, and Ferry must carry on with them.
  d1_during_uploads
  registry_stop d1
  sleep 1
  registry_restart d1
  restarts=$((restarts + 3))
done

converged=0
chaos_wait_converged "$TEST_TMP/verify.yaml" 240 && converged=1
seconds=$((SECONDS - start))
wait_until 30 chaos_idle || true
failed_total=$(chaos_failed_total)
failures=$(chaos_api /v1/failures | jq '.failures | length')

# Sessions at d1, from its access log: a status check (GET of the upload URL)
# answered 204 followed by a PATCH to the same session is a resumed upload.
registry_access_log d1 >"$TEST_TMP/d1.access"
resumed=$(awk '
  $1 == "GET" && $2 ~ /\/blobs\/uploads\// && $3 == 204 { split($2, p, "?"); asked[p[1]] = 1 }
  $1 == "PATCH" && $3 == 202 { split($2, p, "?"); if (asked[p[1]]) { resumed[p[1]] = 1 } }
  END { n = 0; for (s in resumed) n++; print n }' "$TEST_TMP/d1.access")
checks=$(grep -cE '^GET /v2/[^ ]+/blobs/uploads/[^ ]+ (204|404)$' "$TEST_TMP/d1.access" || true)
dropped=$(grep -cE '^GET /v2/[^ ]+/blobs/uploads/[^ ]+ 404$' "$TEST_TMP/d1.access" || true)
sessions=$(grep -cE '^POST /v2/[^ ]+/blobs/uploads/ 202$' "$TEST_TMP/d1.access" || true)
patches=$(grep -cE '^PATCH ' "$TEST_TMP/d1.access" || true)
ranged=$(registry_count_requests src GET '/v2/.*/blobs/sha256:.*' 206)
retries=$(chaos_api /v1/status | jq '[.destinations[].retries] | add')

figure "restart images=$images layers=2x$layer registry_restarts=$restarts converged=$converged seconds=$seconds failed_jobs=$failed_total"
figure "restart d1 chunked: sessions=$sessions patches=$patches status_checks=$checks resumed_sessions=$resumed dropped_by_registry=$dropped; source ranged_gets=$ranged job_retries=$retries"
((converged)) || fail "no convergence after the restarts: $(head -n 3 "$TEST_TMP/verify.out")"
assert_eq "$failed_total" 0 "no FAILED job ($(chaos_api /v1/failures | jq -c '.failures[:2]'))"
assert_eq "$failures" 0 "no failure listed"
((checks >= 1)) || fail "after the restart Ferry never asked an upload session's status"
((resumed >= 1)) || fail "no chunked upload resumed its session ($checks status checks, $dropped dropped)"
chaos_row "source and chunked-upload destination killed (and the destination also restarted gracefully) $restarts times in all, mid-transfer, 2 × $(sed 's/M$/ MiB/' <<<"$layer") layers × $images images" \
  "**pass**: converged in $seconds s, no FAILED job; $resumed chunked sessions resumed after a status check, $dropped dropped by Distribution and started again; $ranged downloads resumed with \`Range\`"
pass "restart: $restarts registry restarts mid-transfer; converged, $resumed chunked sessions resumed"
