#!/usr/bin/env bash
# A credential helper that fails or hangs. `fail` (exit 1, "boom: the vault
# is sealed" on stderr, a marker on stdout): `ferry copy` and `ferry sync`
# fail with one line naming the registry, docker-credential-ferrytest and its
# stderr, never its stdout. `hang` (sleeps, with a child `sleep 1000` holding
# its pipes open) under `command_timeout: 2s`: `ferry sync` fails within
# ~10 s saying the helper timed out, and neither the helper nor its child
# survives (the whole process group is killed). The processes are found by
# the PIDs the helper writes into its state directory, never by name.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

token_issuer_start --password-dir "$TEST_TMP/passwords" --expires 2 --hard-expiry
registry_start src
registry_start dst --token
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 1 --layer-size 4K --compact >"$TEST_TMP/app.json"
credhelper_install "$TEST_TMP/bin"
export PATH="$TEST_TMP/bin:$PATH"
export FERRYTEST_HELPER_DIR="$TEST_TMP/helper" FERRYTEST_PASSWORD_DIR="$TOKEN_PASSWORD_DIR" FERRYTEST_TTL=30
mkdir -p "$FERRYTEST_HELPER_DIR"
: >"$FERRYTEST_HELPER_DIR/calls"
calls() { wc -l <"$FERRYTEST_HELPER_DIR/calls"; }

# pid_running PID : the process exists and is not a zombie
pid_running() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z ]]
}
# hang_pids : the PIDs of every hanging helper and child so far
hang_pids() {
  [[ -f "$FERRYTEST_HELPER_DIR/hang.pids" ]] || return 0
  awk '{ print $2 }' "$FERRYTEST_HELPER_DIR/hang.pids"
}
# kill_hang_pids : what Ferry should have killed, if it did not (by PID)
kill_hang_pids() {
  local pid
  for pid in $(hang_pids); do
    if pid_running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}
on_exit kill_hang_pids
# any_hang_running : a helper or child of the hang mode still runs
any_hang_running() {
  local pid
  for pid in $(hang_pids); do
    if pid_running "$pid"; then return 0; fi
  done
  return 1
}

# check_fail_error NAME : NAME.err is one line naming the registry, the
# helper and its stderr; neither output shows the helper's stdout
check_fail_error() {
  local err="$TEST_TMP/$1.err" out="$TEST_TMP/$1.out"
  if grep -q 'SECRET-ON-STDOUT' "$err" "$out"; then fail "$1: the helper's stdout was printed: $(cat "$err")"; fi
  grep -q 'docker-credential-ferrytest' "$err" || fail "$1: the error does not name the helper: $(cat "$err")"
  grep -q 'vault is sealed' "$err" || fail "$1: the error does not carry the helper's stderr: $(cat "$err")"
}

# 1. ferry copy, the helper named by credHelpers, in mode fail.
mkdir -p "$TEST_TMP/docker"
jq -n --arg d "$dst_ADDR" '{credHelpers: {($d): "ferrytest"}}' >"$TEST_TMP/docker/config.json"
before=$(calls)
rc=0
FERRYTEST_MODE=fail timeout 60 "$FERRY" copy --no-cache --retries 1 --authfile "$TEST_TMP/docker/config.json" \
  "$src_ADDR/app:v1" "$dst_ADDR/app:v1" >"$TEST_TMP/copy.out" 2>"$TEST_TMP/copy.err" || rc=$?
((rc != 124)) || fail "ferry copy did not return within 60 s"
((rc != 0)) || fail "ferry copy succeeded with a failing helper"
(($(calls) > before)) || fail "ferry copy did not run the helper"
check_fail_error copy
assert_eq "$(grep -c . "$TEST_TMP/copy.err")" 1 "ferry copy's error is one line ($(cat "$TEST_TMP/copy.err"))"
grep -qF "$dst_ADDR" "$TEST_TMP/copy.err" || fail "ferry copy's error does not name the registry: $(cat "$TEST_TMP/copy.err")"
assert_eq "$(token_manifest_digest dst app v1)" 404 "nothing was pushed"
pass "ferry copy: a failing helper is one line with its stderr, never its stdout (exit $rc)"

# 2. ferry sync, credential_helper in the config, in mode fail.
# config_yaml TIMEOUT : a config for `ferry sync` with dst behind the helper
config_yaml() {
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
retry: { attempts: 1, base: 100ms, max: 200ms }
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR", credential_helper: ferrytest, command_timeout: $1 }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML
}
config_yaml 5s
before=$(calls)
rc=0
FERRYTEST_MODE=fail timeout 60 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" \
  >"$TEST_TMP/sync-fail.out" 2>"$TEST_TMP/sync-fail.err" || rc=$?
((rc != 124)) || fail "ferry sync did not return within 60 s"
((rc != 0)) || fail "ferry sync succeeded with a failing helper"
(($(calls) > before)) || fail "ferry sync did not run the helper"
if grep -rq 'SECRET-ON-STDOUT' "$TEST_TMP/sync-fail.out" "$TEST_TMP/sync-fail.err" "$TEST_TMP/data"; then
  fail "ferry sync: the helper's stdout was printed or kept"
fi
cat "$TEST_TMP/sync-fail.out" "$TEST_TMP/sync-fail.err" >"$TEST_TMP/sync-fail.all"
awk '/docker-credential-ferrytest/ && /vault is sealed/ && /dst/ { found = 1 } END { exit !found }' \
  "$TEST_TMP/sync-fail.all" ||
  fail "ferry sync: no line names dst, the helper and its stderr: $(tail -n 5 "$TEST_TMP/sync-fail.all")"
pass "ferry sync: a failing helper's error names dst and the helper (exit $rc)"

# 3. ferry sync, mode hang, command_timeout 2s: killed, with its child.
rm -rf "$TEST_TMP/data"
config_yaml 2s
before=$(calls)
t0=$(_itest_now_ms)
rc=0
FERRYTEST_MODE=hang timeout 60 "$FERRY" sync -c "$TEST_TMP/ferry.yaml" \
  >"$TEST_TMP/sync-hang.out" 2>"$TEST_TMP/sync-hang.err" || rc=$?
took=$(($(_itest_now_ms) - t0))
((rc != 124)) || fail "ferry sync did not return within 60 s with a hanging helper"
((rc != 0)) || fail "ferry sync succeeded with a hanging helper"
(($(calls) > before)) || fail "ferry sync did not run the helper"
[[ -s "$FERRYTEST_HELPER_DIR/hang.pids" ]] || fail "the hanging helper wrote no PIDs"
((took <= 10000)) || fail "ferry sync took $took ms with command_timeout 2s"
cat "$TEST_TMP/sync-hang.out" "$TEST_TMP/sync-hang.err" >"$TEST_TMP/sync-hang.all"
awk '/docker-credential-ferrytest/ && tolower($0) ~ /timed out/ { found = 1 } END { exit !found }' \
  "$TEST_TMP/sync-hang.all" ||
  fail "ferry sync does not say the helper timed out: $(tail -n 5 "$TEST_TMP/sync-hang.all")"
# The kill is at most a moment behind the exit.
no_hang_running() { ! any_hang_running; }
wait_until 3 no_hang_running ||
  fail "still running after ferry sync returned: $(while read -r what pid; do
    if pid_running "$pid"; then printf '%s %s ' "$what" "$pid"; fi; done <"$FERRYTEST_HELPER_DIR/hang.pids")"
pass "ferry sync: a hanging helper is killed with its child at command_timeout ($took ms, exit $rc)"
