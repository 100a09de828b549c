#!/usr/bin/env bash
# ferry ls and ferry catalog follow Link pagination to the last page, through
# auth, and fail clearly on an unknown repository.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start reg --htpasswd bob:list-pw
for t in v1 v2 v3 v4 v5; do
  fixturegen push --registry "$reg_ADDR" --repo app --tag "$t" --seed "$t" --layers 1 --layer-size 1K \
    --user bob --password list-pw --compact >/dev/null
done
for r in a b c d; do
  fixturegen push --registry "$reg_ADDR" --repo "team/$r" --tag v1 --layers 1 --layer-size 1K \
    --user bob --password list-pw --compact >/dev/null
done

got=$("$FERRY" ls --creds bob:list-pw --page-size 2 "$reg_ADDR/app" | sort | tr "\n" " ")
# Distribution 2.8 ignores n= on tags/list (one page); its catalog pages below.
assert_eq "$got" "v1 v2 v3 v4 v5 " "all tags"
pass "ls lists every tag"

got=$("$FERRY" catalog --creds bob:list-pw --page-size 2 --json "$reg_ADDR")
assert_eq "$got" '["app","team/a","team/b","team/c","team/d"]' "catalog over three pages"
assert_eq "$(registry_count_requests reg GET '/v2/_catalog.*' 200 'ferry.*')" 3 "three pages fetched"
pass "catalog follows Link pagination"

set +e
"$FERRY" ls --creds bob:list-pw "$reg_ADDR/nope" 2>"$TEST_TMP/e1"
rc=$?
"$FERRY" ls --creds bob:wrong "$reg_ADDR/app" 2>"$TEST_TMP/e2"
rc2=$?
"$FERRY" ls "$reg_ADDR/app:v1" 2>/dev/null
rc3=$?
set -e
assert_eq "$rc" 1 "unknown repository exits 1"
grep -q NAME_UNKNOWN "$TEST_TMP/e1" || fail "unknown repository error: $(cat "$TEST_TMP/e1")"
assert_eq "$rc2" 1 "wrong password exits 1"
grep -q 'HTTP 401' "$TEST_TMP/e2" || fail "auth error: $(cat "$TEST_TMP/e2")"
assert_eq "$rc3" 2 "a tag in ls is a usage error"
pass "listing errors are clear"
