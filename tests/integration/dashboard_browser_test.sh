#!/usr/bin/env bash
# labels: heavy
# The dashboard in headless Chromium (tests/browser/dashboard.mjs, driven by
# playwright-core): it asks for the API token and refuses a wrong one; a
# replication to a stopped destination shows as a failure with its error; once
# the registry is back, the retry button brings the image to COMPLETE; a
# stopped daemon shows the "disconnected" banner until it returns. Screenshots
# at desktop and phone width go to $FERRY_BUILD_DIR/screenshots/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

command -v node >/dev/null || fail "node is not installed (run ./build.sh)"
chromium=${CHROMIUM:-/usr/bin/chromium}
[[ -x "$chromium" ]] || fail "chromium not found at $chromium (run ./build.sh)"
[[ -d "$FERRY_SOURCE_DIR/replicator/daemon/dashboard/node_modules/playwright-core" ]] ||
  fail "playwright-core is not installed in replicator/daemon/dashboard (run ./build.sh)"

registry_start src
registry_start d1
registry_stop d1 # its port stays reserved for registry_restart

token=dashboard-test-token-$RANDOM$RANDOM
port=$(free_port)
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
api_token: $token
retry: { attempts: 2, base: 100ms, max: 200ms }
circuit: { failures: 100, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  d1: { url: "http://$d1_ADDR" }
rules:
  - { name: mirror, source: src, destinations: [{ registry: d1, repository: "mirror/{repo}" }] }
YAML
chmod 600 "$TEST_TMP/ferry.yaml"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/status")
assert_eq "$code" 401 "GET /v1/status without the token"
code=$(curl -s -o "$TEST_TMP/index.html" -w '%{http_code}' "http://127.0.0.1:$port/")
assert_eq "$code" 200 "GET / (the page loads without a token)"
grep -q 'uplot.min.js' "$TEST_TMP/index.html" || fail "GET / is not the dashboard: $(head -c 200 "$TEST_TMP/index.html")"

fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 1 --layer-size 20K --compact >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")

control="$TEST_TMP/browser"
shots="$FERRY_BUILD_DIR/screenshots"
mkdir -p "$control" "$shots"
rm -f "$shots"/dashboard-*.png
start_bg browser env CHROMIUM="$chromium" DASHBOARD_DEST=d1 DASHBOARD_IMAGE=app:v1 \
  node "$FERRY_SOURCE_DIR/tests/browser/dashboard.mjs" "http://127.0.0.1:$port/" "$token" "$control" "$shots"

# await MARKER TIMEOUT_S : wait for the browser script's marker file; fail
# (with its output) when it exits first or the time is up.
await() {
  # shellcheck disable=SC2317 # called through wait_until
  _marker_or_exit() { [[ -e "$control/$1" ]] || ! kill -0 "$browser_PID" 2>/dev/null; }
  wait_until "$2" _marker_or_exit "$1" || fail "the browser script did not reach '$1' in $2 s: $(tail -n 5 "$TEST_TMP/browser.log")"
  [[ -e "$control/$1" ]] || fail "the browser script stopped before '$1': $(tail -n 5 "$TEST_TMP/browser.log")"
}

await failure-seen 90
pass "the page asked for the token, refused a wrong one, and shows d1's failure"
registry_restart d1
touch "$control/registry-up"

await complete 60
assert_eq "$(skopeo_raw "$d1_ADDR/mirror/app:v1" | digest_of)" "$want" "the retried image is in d1"
pass "retry from the page: the image is COMPLETE in d1"

# From here to the reconnection the page may see requests reset or refused.
touch "$control/daemon-stopping"
stop_bg ferry
touch "$control/daemon-down"
await banner-seen 30
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
touch "$control/daemon-up"

# shellcheck disable=SC2317 # called through wait_until
browser_exited() { ! kill -0 "$browser_PID" 2>/dev/null; }
wait_until 60 browser_exited || fail "the browser script did not finish: $(tail -n 5 "$TEST_TMP/browser.log")"
rc=0
wait "$browser_PID" || rc=$?
cat "$TEST_TMP/browser.log"
assert_eq "$rc" 0 "the browser script's exit status"
for f in dashboard-desktop.png dashboard-phone.png; do
  [[ -s "$shots/$f" ]] || fail "no screenshot $shots/$f"
done
pass "the disconnected banner came and went with the daemon; screenshots in $shots"
