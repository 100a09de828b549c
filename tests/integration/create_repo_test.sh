#!/usr/bin/env bash
# Repositories that must exist (ECR, Harbor projects): the fault proxy's
# repository gate in front of a Distribution destination refuses pushes
# (blob upload POSTs, manifest PUTs) into a repository not created yet, with
# 404 NAME_UNKNOWN as ECR does, or 403 DENIED as Harbor does for a missing
# project. The destination's create_repository hook (argv, no shell; here a
# script that logs "{registry} {repo}" and creates it through the proxy's
# control endpoint, as `aws ecr create-repository` would) runs once per
# repository, and the push is tried again.
#
# 1. ferry sync of 3 images in 2 repositories, with --repo-gate 404, then
#    403: every image arrives, the hook ran exactly once per repository.
# 2. A hook that fails (exit 1): the jobs end FAILED with its stderr in the
#    error, and sync exits 1.
# 3. A hook that succeeds but creates nothing: the push is tried again once,
#    then fails the normal way, saying the hook ran and the push is still
#    refused; the hook ran once per repository.
# 4. A push refused 401 (not a missing repository) never runs the hook.
set -euo pipefail
source "$(dirname "$0")/proxy_lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
fixturegen push --registry "$src_ADDR" --repo team/app --tag v1 --seed 1 --layers 2 --layer-size 20K \
  --compact >"$TEST_TMP/app1.json"
fixturegen push --registry "$src_ADDR" --repo team/app --tag v2 --seed 2 --layers 2 --layer-size 20K \
  --compact >"$TEST_TMP/app2.json"
fixturegen push --registry "$src_ADDR" --repo team/db --tag v1 --seed 3 --layers 1 --layer-size 20K \
  --compact >"$TEST_TMP/db1.json"

# The hook: logs its arguments, then does what it is told ($3: create, fail, nothing).
cat >"$TEST_TMP/hook.sh" <<'SH'
#!/bin/sh
echo "$1 $2" >>"$HOOK_LOG"
sleep 0.3 # long enough for the other jobs of the repository to be refused meanwhile
case $3 in
  create) exec curl -fsS -X POST "$4" ;;
  fail) echo "AccessDenied: not allowed to create $2" >&2; exit 1 ;;
  nothing) exit 0 ;;
esac
SH
chmod +x "$TEST_TMP/hook.sh"

# write_config NAME GATE_PROXY HOW : a config syncing team/** from src to the proxy.
write_config() {
  local name=$1 proxy=$2 how=$3
  local addr_var="${proxy}_ADDR" control_var="${proxy}_CONTROL"
  cat >"$TEST_TMP/$name.yaml" <<YAML
data_dir: $TEST_TMP/data-$name
poll_interval: 0
retry: { attempts: 2, base: 100ms, max: 200ms }
# Refusals count toward a destination's circuit: with the default 5, team/app's
# four refused attempts could open it before team/db's job asked its hook
# (one run in ten under load). The hook is what these checks are about.
circuit: { failures: 50 }
registries:
  src: { url: "http://$src_ADDR" }
  ecr:
    url: "http://${!addr_var}"
    command_timeout: 10s
    create_repository: ["$TEST_TMP/hook.sh", "{registry}", "{repo}", "$how",
                        "${!control_var}/repositories?name={repo}"]
rules:
  - { name: team, source: src, repositories: ["team/**"], destinations: [{ registry: ecr }] }
YAML
}

# 1. The hook creates the repository: with ECR's answer, then Harbor's.
for gate in 404 403; do
  registry_start "dst$gate"
  dst_addr_var="dst${gate}_ADDR"
  proxy_start "gate$gate" "${!dst_addr_var}" --repo-gate "$gate"
  write_config "ok$gate" "gate$gate" create
  export HOOK_LOG="$TEST_TMP/hook-$gate.log"
  rc=0
  timeout 60 "$FERRY" sync -c "$TEST_TMP/ok$gate.yaml" >"$TEST_TMP/ok$gate.out" 2>"$TEST_TMP/ok$gate.err" || rc=$?
  assert_eq "$rc" 0 "sync through --repo-gate $gate ($(tail -3 "$TEST_TMP/ok$gate.err"))"
  for img in app1:team/app:v1 app2:team/app:v2 db1:team/db:v1; do
    file=${img%%:*} ref=${img#*:}
    assert_eq "$(skopeo_raw "${!dst_addr_var}/$ref" | digest_of)" "$(jq -r .digest "$TEST_TMP/$file.json")" \
      "$ref arrived (gate $gate)"
  done
  gate_addr_var="gate${gate}_ADDR"
  assert_eq "$(sort "$HOOK_LOG" | tr '\n' ' ')" "${!gate_addr_var} team/app ${!gate_addr_var} team/db " \
    "the hook ran once per repository, with {registry} and {repo} (gate $gate)"
  assert_eq "$(proxy_repos "gate$gate" '.repositories[]' | sort | tr '\n' ' ')" "team/app team/db " \
    "the proxy's repositories were created (gate $gate)"
  assert_eq "$(proxy_repos "gate$gate" .creations)" 2 "each created once (gate $gate)"
  pass "--repo-gate $gate: 3 images in 2 repositories arrive, the hook ran once per repository"
done

# 2. A hook that fails: its stderr is the jobs' error, and sync says FAILED.
registry_start dstfail
proxy_start gatefail "$dstfail_ADDR" --repo-gate 404
write_config fail gatefail fail
export HOOK_LOG="$TEST_TMP/hook-fail.log"
rc=0
timeout 60 "$FERRY" sync -c "$TEST_TMP/fail.yaml" >"$TEST_TMP/fail.out" 2>"$TEST_TMP/fail.err" || rc=$?
assert_eq "$rc" 1 "sync exit status when the hook fails"
grep -q "FAILED.*create_repository for team/app at ecr failed: exited with status 1: AccessDenied: not allowed to create team/app" \
  "$TEST_TMP/fail.out" "$TEST_TMP/fail.err" ||
  fail "the hook's stderr is not in the FAILED line: $(grep -h FAILED "$TEST_TMP/fail.out" "$TEST_TMP/fail.err" | head -3)"
assert_eq "$(proxy_repos gatefail '.repositories | length')" 0 "no repository was created"
pass "a failing hook makes the jobs FAILED with its stderr, and sync exits 1"

# 3. A hook that creates nothing: one more try, then the normal path; it ran once per repository.
registry_start dstnone
proxy_start gatenone "$dstnone_ADDR" --repo-gate 403
write_config none gatenone nothing
export HOOK_LOG="$TEST_TMP/hook-none.log"
rc=0
timeout 60 "$FERRY" sync -c "$TEST_TMP/none.yaml" >"$TEST_TMP/none.out" 2>"$TEST_TMP/none.err" || rc=$?
assert_eq "$rc" 1 "sync exit status when the repository stays missing"
grep -q "FAILED.*create_repository ran for team/db at ecr, but the push is still refused: .*403" \
  "$TEST_TMP/none.out" "$TEST_TMP/none.err" ||
  fail "no 'still refused' error: $(grep -h FAILED "$TEST_TMP/none.out" "$TEST_TMP/none.err" | head -3)"
assert_eq "$(wc -l <"$HOOK_LOG")" 2 "the hook ran once per repository, not again on retries"
pass "a hook that creates nothing: the push is refused again and the job FAILED says so"

# 4. A push refused for another reason than a missing repository (a 401:
#    credentials the registry refuses, here for uploads only, as a token
#    without push rights would be) never runs the hook.
registry_start dstauth
proxy_start gateauth "$dstauth_ADDR" "POST /blobs/uploads/ status=401"
write_config auth gateauth nothing
export HOOK_LOG="$TEST_TMP/hook-auth.log"
rc=0
timeout 60 "$FERRY" sync -c "$TEST_TMP/auth.yaml" >"$TEST_TMP/auth.out" 2>"$TEST_TMP/auth.err" || rc=$?
assert_eq "$rc" 1 "sync exit status with uploads refused 401"
[[ ! -s "$HOOK_LOG" ]] || fail "the hook ran on a 401: $(cat "$HOOK_LOG")"
grep -q "FAILED.*401" "$TEST_TMP/auth.out" "$TEST_TMP/auth.err" ||
  fail "the 401 is not in the FAILED line: $(grep -h FAILED "$TEST_TMP/auth.out" "$TEST_TMP/auth.err" | head -3)"
pass "a push refused 401 is not a missing repository: no hook, the 401 said"
