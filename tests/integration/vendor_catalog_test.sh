#!/usr/bin/env bash
# Registries without a catalog (ECR, GHCR, Docker Hub, GAR for non-admins),
# played by the fault proxy in front of Distribution: GET /v2/_catalog is
# answered 404 (hub) or 401 (ghcr). `ferry sync` fails with one line that
# says to list the repositories under `repositories:`; `ferry serve` asks
# each refused catalog once, not at every round, shows the error in the
# source's status and logs it once, while a source with a catalog goes on;
# a reload asks again, and a config that lists the repositories needs no
# catalog at all.
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start other
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 1 --layers 1 --layer-size 2K --compact >/dev/null
fixturegen push --registry "$other_ADDR" --repo lib --tag v1 --seed 2 --layers 1 --layer-size 2K --compact >/dev/null
proxy_start hub "$src_ADDR" 'GET /v2/_catalog status=404'
proxy_start ghcr "$src_ADDR" 'GET /v2/_catalog status=401'

# write_config [HUB_REPOSITORIES_YAML]
write_config() {
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  hub: { url: "http://$hub_ADDR" $1 }
  ghcr: { url: "http://$ghcr_ADDR" }
  other: { url: "http://$other_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: hub, source: hub, destinations: [{ registry: dst, repository: "hub/{repo}" }] }
  - { name: ghcr, source: ghcr, destinations: [{ registry: dst, repository: "ghcr/{repo}" }] }
  - { name: other, source: other, destinations: [{ registry: dst, repository: "other/{repo}" }] }
YAML
}
port=$(free_port)
write_config ""

# catalog_asks NAME : the catalog requests the proxy NAME refused so far.
catalog_asks() { proxy_fault_count "$1" status; }

# 1. ferry sync: not a clean sync, and the line says what to do.
rc=0
"$FERRY" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "ferry sync with a refused catalog"
grep -E '^FAILED +polling: source (hub|ghcr)\b.*repositories:' "$TEST_TMP/sync.out" >/dev/null ||
  fail "ferry sync did not say to list the repositories: $(cat "$TEST_TMP/sync.out")"
for s in hub ghcr; do
  grep -E "warn poller: source $s\b.*repositories:.*HTTP 40[14]" "$TEST_TMP/sync.out" >/dev/null ||
    fail "ferry sync did not log $s's refusal with its answer: $(cat "$TEST_TMP/sync.out")"
done
# One ask of each catalog; an ask is one request for a 404, and what the
# client's auth makes of a 401 with a Basic challenge (a few at most).
per_ask_hub=$(catalog_asks hub)
per_ask_ghcr=$(catalog_asks ghcr)
assert_eq "$per_ask_hub" 1 "a 404 catalog: one request in a sync"
((per_ask_ghcr >= 1 && per_ask_ghcr <= 4)) || fail "a 401 catalog: $per_ask_ghcr requests in one sync"
pass "ferry sync: a refused catalog is one clear line that says to list repositories:"

# 2. ferry serve: several rounds, the refused catalogs asked once each; the
# other source is polled all along.
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port" # "poll round done" is info
API="http://127.0.0.1:$port"
rounds() { grep -c 'poll round done' "$TEST_TMP/ferry.log" || true; }
wait_until 20 bash -c "[ \$(grep -c 'poll round done' '$TEST_TMP/ferry.log') -ge 5 ]" ||
  fail "five rounds did not pass: $(rounds)"
fixturegen push --registry "$other_ADDR" --repo lib --tag v2 --seed 3 --layers 1 --layer-size 2K --compact >/dev/null
# shellcheck disable=SC2317 # called through wait_until
other_polled() { skopeo_raw "$dst_ADDR/other/lib:v2" >/dev/null 2>&1; }
wait_until 20 other_polled || fail "the source with a catalog was not polled on"
assert_eq "$(catalog_asks hub) $(catalog_asks ghcr)" "$((2 * per_ask_hub)) $((2 * per_ask_ghcr))" \
  "serve asked each refused catalog once over $(rounds) rounds"
assert_eq "$(grep -c 'warn poller: source hub\b.*repositories:' "$TEST_TMP/ferry.log")" 1 "hub's refusal logged once"
assert_eq "$(grep -c 'warn poller: source ghcr\b.*repositories:' "$TEST_TMP/ferry.log")" 1 "ghcr's refusal logged once"
status=$(curl -sf "$API/v1/status")
for s in hub ghcr; do
  jq -e --arg s "$s" '.sources[] | select(.name == $s) | .poller_error |
    test("^source " + $s + "\\b.*repositories:")' <<<"$status" >/dev/null ||
    fail "the status of $s does not say to list repositories: $(jq -c '.sources' <<<"$status")"
done
jq -e '.sources[] | select(.name == "other") | .poller_error == null and .ratelimit == null' \
  <<<"$status" >/dev/null || fail "the source with a catalog shows an error: $(jq -c '.sources' <<<"$status")"
pass "serve: each refused catalog asked once over $(rounds) rounds, in the status, logged once; others go on"

# 3. The config lists hub's repositories: a reload polls them, no catalog asked.
# (ghcr still has none: its catalog is asked again once, the reload being a new start.)
write_config ', repositories: [app]'
kill -HUP "$ferry_PID"
# shellcheck disable=SC2317 # called through wait_until
hub_polled() { skopeo_raw "$dst_ADDR/hub/app:v1" >/dev/null 2>&1; }
wait_until 20 hub_polled || fail "hub's listed repository was not replicated after the reload"
r0=$(rounds)
wait_until 20 bash -c "[ \$(grep -c 'poll round done' '$TEST_TMP/ferry.log') -ge $((r0 + 3)) ]" ||
  fail "rounds stopped after the reload"
assert_eq "$(catalog_asks hub)" "$((2 * per_ask_hub))" "hub's catalog is not asked once its repositories are listed"
assert_eq "$(catalog_asks ghcr)" "$((3 * per_ask_ghcr))" "ghcr's catalog asked once more after the reload, then not again"
status=$(curl -sf "$API/v1/status")
jq -e '.sources[] | select(.name == "hub") | .poller_error == null' <<<"$status" >/dev/null ||
  fail "hub still shows an error: $(jq -c '.sources' <<<"$status")"
pass "with repositories: listed, no catalog is asked; a reload asks a refused one again, once"
