#!/usr/bin/env bash
# Robot accounts, as Harbor (robot$name) and Quay (org+name) name them: a
# user name with `$` or `+`, its password in a password_file, against
# Distribution with htpasswd (Basic auth). `ferry sync` copies an image to
# each, and `ferry verify` agrees; the YAML quotes the names, as the README's
# Registries section shows.
# shellcheck disable=SC2154 # NAME_ADDR is set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry

registry_start src
registry_start harbor --htpasswd 'robot$ferry:harbor-robot-pw'
registry_start quay --htpasswd 'myorg+ferry:quay-robot-pw'
fixturegen push --registry "$src_ADDR" --repo team/app --tag v1 >"$TEST_TMP/app.json"
want=$(jq -r .digest "$TEST_TMP/app.json")

mkdir -p "$TEST_TMP/secrets"
chmod 700 "$TEST_TMP/secrets"
printf 'harbor-robot-pw\n' >"$TEST_TMP/secrets/harbor-robot"
printf 'quay-robot-pw\n' >"$TEST_TMP/secrets/quay-robot"
chmod 600 "$TEST_TMP/secrets/"*
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
registries:
  src: { url: "http://$src_ADDR" }
  harbor:
    url: http://$harbor_ADDR
    username: "robot\$ferry"
    password_file: secrets/harbor-robot
  quay:
    url: http://$quay_ADDR
    username: "myorg+ferry"
    password_file: secrets/quay-robot
rules:
  - { name: all, source: src, destinations: [{ registry: harbor }, { registry: quay }] }
YAML
chmod 600 "$TEST_TMP/ferry.yaml"

"$(ferry_bin)" sync -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/sync.out" 2>"$TEST_TMP/sync.err" ||
  fail "sync failed: $(cat "$TEST_TMP/sync.out" "$TEST_TMP/sync.err")"
for r in harbor quay; do
  addr_var="${r}_ADDR"
  pw=$([[ $r == harbor ]] && echo 'robot$ferry:harbor-robot-pw' || echo 'myorg+ferry:quay-robot-pw')
  got=$(skopeo_raw "${!addr_var}/team/app:v1" --creds "$pw" | digest_of)
  assert_eq "$got" "$want" "team/app:v1 at $r"
  # Basic auth went through: the registry logged authorized pushes.
  n=$(registry_count_requests "$r" PUT '/v2/team/app/manifests/v1' 201)
  ((n >= 1)) || fail "$r saw no authorized manifest PUT"
done
"$(ferry_bin)" verify -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.out" 2>&1 ||
  fail "verify failed: $(cat "$TEST_TMP/verify.out")"
if grep -qF -e harbor-robot-pw -e quay-robot-pw "$TEST_TMP/sync.out" "$TEST_TMP/sync.err" \
  "$TEST_TMP/verify.out"; then
  fail "a password in the output"
fi
pass "robot\$ferry and myorg+ferry log in from password files; sync and verify agree"
