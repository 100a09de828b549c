#!/usr/bin/env bash
# deploy/: the systemd unit passes systemd-analyze verify (where it can run);
# every YAML file parses; `ferry serve --check-config` accepts every example
# config (and the Kubernetes ConfigMap's) without touching anything; and the
# demo runs for real — registries, ferry serve, images replicated, the status
# table — and leaves no process behind.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
DEPLOY="$FERRY_SOURCE_DIR/deploy"

# systemd unit
if command -v systemd-analyze >/dev/null 2>&1; then
  sed "s|/usr/local/bin/ferry|$FERRY|" "$DEPLOY/systemd/ferry.service" >"$TEST_TMP/ferry.service"
  systemd-analyze verify "$TEST_TMP/ferry.service" 2>"$TEST_TMP/verify.err" ||
    fail "systemd-analyze verify: $(cat "$TEST_TMP/verify.err")"
  if grep -v '^$' "$TEST_TMP/verify.err" | grep -q .; then
    fail "systemd-analyze verify warned: $(cat "$TEST_TMP/verify.err")"
  fi
  pass "deploy/systemd/ferry.service verifies"
else
  note "systemd-analyze is not installed here: the unit is not verified"
fi
for key in Type=notify DynamicUser=yes StateDirectory=ferry ProtectSystem=strict NoNewPrivileges=yes 'ExecReload=/bin/kill -HUP'; do
  grep -q "^$key" "$DEPLOY/systemd/ferry.service" || fail "the unit lacks $key"
done

# Every YAML file under deploy/ parses.
n=0
while IFS= read -r -d '' f; do
  python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f" 2>"$TEST_TMP/yaml.err" ||
    fail "$f does not parse: $(cat "$TEST_TMP/yaml.err")"
  n=$((n + 1))
done < <(find "$DEPLOY" \( -name '*.yaml' -o -name '*.yml' \) -print0)
((n >= 9)) || fail "only $n YAML files under deploy/"
pass "$n YAML files under deploy/ parse"

# The kustomization renders the four objects, where kubectl is installed
# (it is no Debian package, so CI's machine has none).
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize "$DEPLOY/k8s" >"$TEST_TMP/k8s.yaml" 2>"$TEST_TMP/k8s.err" ||
    fail "kubectl kustomize deploy/k8s: $(cat "$TEST_TMP/k8s.err")"
  assert_eq "$(grep -E '^kind:' "$TEST_TMP/k8s.yaml" | sort | tr '\n' ' ')" \
    "kind: ConfigMap kind: Secret kind: Service kind: StatefulSet " "deploy/k8s renders"
  pass "deploy/k8s renders with kubectl kustomize"
else
  note "kubectl is not installed here: the kustomization is not rendered"
fi

# Every example config (and the ConfigMap's) passes --check-config, with the
# secrets they name present, and nothing created.
export FERRY_WEBHOOK_TOKEN=x FERRY_API_TOKEN=y PRIMARY_PASSWORD=p PLATFORM_PASSWORD=p PAYMENTS_PASSWORD=p \
  SEARCH_PASSWORD=p BUILD_PASSWORD=p US_EAST_PASSWORD=p EU_WEST_PASSWORD=p AP_SOUTH_PASSWORD=p EU_PASSWORD=p \
  AP_PASSWORD=p FERRY_DEMO_WEBHOOK_TOKEN=d
mkdir -p "$TEST_TMP/examples"
cp "$DEPLOY"/examples/*.yaml "$TEST_TMP/examples/"
echo secret >"$TEST_TMP/examples/standby.password"
python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["ferry.yaml"])' \
  "$DEPLOY/k8s/configmap.yaml" >"$TEST_TMP/examples/k8s-configmap.yaml"
for f in "$TEST_TMP"/examples/*.yaml; do
  "$FERRY" serve --check-config -c "$f" 2>"$TEST_TMP/check.err" ||
    fail "$(basename "$f"): $(cat "$TEST_TMP/check.err")"
  grep -q 'is valid' "$TEST_TMP/check.err" || fail "$(basename "$f"): $(cat "$TEST_TMP/check.err")"
done
# A check touches nothing: a config whose data_dir does not exist leaves it so.
sed "s|^data_dir: .*|data_dir: $TEST_TMP/never-made|" "$TEST_TMP/examples/demo.yaml" >"$TEST_TMP/untouched.yaml"
"$FERRY" serve --check-config -c "$TEST_TMP/untouched.yaml" 2>/dev/null || fail "--check-config refused the demo config"
[[ ! -e "$TEST_TMP/never-made" ]] || fail "--check-config created the data_dir"
unset PRIMARY_PASSWORD
if "$FERRY" serve --check-config -c "$TEST_TMP/examples/dr-mirror.yaml" 2>"$TEST_TMP/check.err"; then
  fail "--check-config passed with a missing secret"
fi
grep -q 'PRIMARY_PASSWORD' "$TEST_TMP/check.err" || fail "the missing secret is not named: $(cat "$TEST_TMP/check.err")"
pass "every example config passes --check-config; a missing secret is named"

# The demo, for real, as a user runs it: in its own process group (a
# terminal's foreground job), until Ctrl-C, which the terminal sends to the
# whole group.
set -m
FERRY_BIN="$FERRY" DEMO_DIR="$TEST_TMP/demo" bash "$DEPLOY/demo.sh" >"$TEST_TMP/demo.out" 2>&1 &
demo=$!
set +m
on_exit "kill -KILL -$demo 2>/dev/null || true"
# running : the demo got to its loop, or died
running() {
  grep -q 'running; Ctrl-C stops everything' "$TEST_TMP/demo.out" || ! kill -0 "$demo" 2>/dev/null
}
wait_until 300 running || true
grep -q 'running; Ctrl-C stops everything' "$TEST_TMP/demo.out" ||
  fail "the demo did not get to 'running': $(tail -20 "$TEST_TMP/demo.out")"
grep -qE '^us-west +closed +0 ' "$TEST_TMP/demo.out" || fail "no status table: $(tail -20 "$TEST_TMP/demo.out")"
grep -qE '^eu-central +mirror/shop/web +COMPLETE' "$TEST_TMP/demo.out" || fail "no image table: $(tail -20 "$TEST_TMP/demo.out")"
grep -q 'dashboard: http://127.0.0.1:18780/' "$TEST_TMP/demo.out" || fail "no dashboard URL"
curl -sf -o /dev/null http://127.0.0.1:18780/healthz || fail "the demo's ferry serve does not answer while it runs"
kill -INT -- -"$demo"
deadline=$((SECONDS + 30))
while kill -0 "$demo" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
kill -0 "$demo" 2>/dev/null && fail "the demo did not stop within 30 s of Ctrl-C"
pids=$(grep -o 'stopping [0-9]* processes ([0-9 ]*)' "$TEST_TMP/demo.out" | grep -o '([0-9 ]*)' | tr -d '()')
[[ -n "$pids" ]] || fail "the demo did not say what it stopped: $(tail -5 "$TEST_TMP/demo.out")"
for p in $pids; do
  if kill -0 "$p" 2>/dev/null; then fail "the demo left process $p behind"; fi
done
if pgrep -g "$demo" >/dev/null; then fail "processes of the demo's group are left: $(pgrep -g "$demo" | tr '\n' ' ')"; fi
pass "the demo replicates for real, runs until Ctrl-C and then leaves no process behind"
