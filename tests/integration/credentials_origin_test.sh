#!/usr/bin/env bash
# Credentials go only to their owner. A hostile registry (behind Basic auth)
# answers a tag listing with a next page on another origin: Ferry may follow
# it, but sends that origin no Authorization header.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

port=$(free_port)
other=$(free_port)
: >"$TEST_TMP/other.log"
start_bg hostile python3 "$FERRY_SOURCE_DIR/tests/fixtures/hostile_registry.py" "$port" "$other" "$TEST_TMP/other.log"
wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$port/v2/" || fail "the hostile registry did not start"

rc=0
timeout 60 "$FERRY" ls --creds alice:s3cret-pw "127.0.0.1:$port/app" >"$TEST_TMP/ls.out" 2>"$TEST_TMP/ls.err" || rc=$?
note "ferry ls exit $rc: $(tr '\n' ' ' <"$TEST_TMP/ls.out") $(tail -2 "$TEST_TMP/ls.err")"
[[ -s "$TEST_TMP/other.log" ]] || note "the other origin was never asked"
if grep -v ' -$' "$TEST_TMP/other.log" | grep -q .; then
  fail "credentials went to another origin: $(cat "$TEST_TMP/other.log")"
fi
if grep -q s3cret-pw "$TEST_TMP/ls.out" "$TEST_TMP/ls.err"; then fail "the password was printed"; fi
pass "a Link to another origin carries no credentials ($(wc -l <"$TEST_TMP/other.log") request(s) there, none with Authorization)"
