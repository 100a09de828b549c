#!/usr/bin/env bash
# deploy/: the systemd unit passes systemd-analyze verify (where it can run)
# and its `systemd-analyze security` exposure does not grow; it reads the
# config and secrets through LoadCredential; every YAML file parses; the
# Kubernetes objects (deploy/k8s, and deploy/k8s-cluster's three nodes with
# their NATS chart values) keep the pod's privileges and network small;
# `ferry serve --check-config` accepts every example config (and both
# ConfigMaps', with real secrets) without touching anything and refuses each
# of the shipped Secrets' placeholders; and the demo runs for real —
# registries, ferry serve, images replicated, the status table — and leaves
# no process behind.
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
  # The exposure score (0 best, 10 worst) of the unit as shipped: 1.2 since
  # LoadCredential, LimitCORE=0 and PrivateMounts came in (1.4 before).
  if systemd-analyze security --offline=yes "$TEST_TMP/ferry.service" >"$TEST_TMP/security.out" 2>&1; then
    score=$(grep -oE 'Overall exposure level for ferry.service: [0-9.]+' "$TEST_TMP/security.out" | grep -oE '[0-9.]+$')
    [[ -n "$score" ]] || fail "no exposure level: $(tail -3 "$TEST_TMP/security.out")"
    awk -v s="$score" 'BEGIN { exit !(s <= 1.2) }' || fail "the unit's exposure level grew to $score (was 1.2)"
    pass "systemd-analyze security: exposure level $score (at most 1.2)"
  else
    note "systemd-analyze security --offline does not run here: $(tail -1 "$TEST_TMP/security.out")"
  fi
else
  note "systemd-analyze is not installed here: the unit is not verified"
fi
for key in Type=notify DynamicUser=yes StateDirectory=ferry ProtectSystem=strict NoNewPrivileges=yes 'ExecReload=/bin/kill -HUP' \
  'LoadCredential=ferry.yaml:/etc/ferry/ferry.yaml' 'ExecStart=/usr/local/bin/ferry serve -c ${CREDENTIALS_DIRECTORY}/ferry.yaml' \
  LimitCORE=0 UMask=0077; do
  awk -v k="$key" 'index($0, k) == 1 { found = 1 } END { exit !found }' "$DEPLOY/systemd/ferry.service" ||
    fail "the unit lacks $key"
done

# Every YAML file under deploy/ parses.
n=0
while IFS= read -r -d '' f; do
  python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f" 2>"$TEST_TMP/yaml.err" ||
    fail "$f does not parse: $(cat "$TEST_TMP/yaml.err")"
  n=$((n + 1))
done < <(find "$DEPLOY" \( -name '*.yaml' -o -name '*.yml' \) -print0)
((n >= 21)) || fail "only $n YAML files under deploy/"
pass "$n YAML files under deploy/ parse"

# The kustomization renders its kinds of object, where kubectl is installed
# (it is no Debian package, so CI's machine has none).
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize "$DEPLOY/k8s" >"$TEST_TMP/k8s.yaml" 2>"$TEST_TMP/k8s.err" ||
    fail "kubectl kustomize deploy/k8s: $(cat "$TEST_TMP/k8s.err")"
  assert_eq "$(grep -E '^kind:' "$TEST_TMP/k8s.yaml" | sort -u | tr '\n' ' ')" \
    "kind: ConfigMap kind: NetworkPolicy kind: Secret kind: Service kind: StatefulSet " "deploy/k8s renders"
  kubectl kustomize "$DEPLOY/k8s-cluster" >"$TEST_TMP/k8s-cluster.yaml" 2>"$TEST_TMP/k8s.err" ||
    fail "kubectl kustomize deploy/k8s-cluster: $(cat "$TEST_TMP/k8s.err")"
  assert_eq "$(grep -E '^kind:' "$TEST_TMP/k8s-cluster.yaml" | sort -u | tr '\n' ' ')" \
    "kind: ConfigMap kind: NetworkPolicy kind: PodDisruptionBudget kind: Secret kind: Service kind: StatefulSet " \
    "deploy/k8s-cluster renders"
  pass "deploy/k8s and deploy/k8s-cluster render with kubectl kustomize"
else
  note "kubectl is not installed here: the kustomization is not rendered"
fi

# The pod: no service account token, not root, a read-only root, the data
# volume given to its group; the NetworkPolicy: in only to the listen port,
# out only to DNS and HTTP(S) (and, for a cluster node, the NATS client port).
# A cluster also has three nodes with stable names, its probes and
# resources, a PodDisruptionBudget of one, and NATS chart values that match
# its config (a 3-server JetStream cluster, the user and the Secret's
# password).
cat >"$TEST_TMP/k8s_check.py" <<'PY'
import sys, yaml
k8s, kind = sys.argv[1], sys.argv[2]
def load(name):
    return yaml.safe_load(open(f"{k8s}/{name}"))
problems = []
pod = load("statefulset.yaml")["spec"]["template"]["spec"]
sc = pod.get("securityContext", {})
csc = pod["containers"][0].get("securityContext", {})
if pod.get("automountServiceAccountToken") is not False:
    problems.append("the pod mounts a service account token")
if sc.get("runAsNonRoot") is not True or not sc.get("fsGroup"):
    problems.append("the pod lacks runAsNonRoot or fsGroup")
if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False:
    problems.append("the container lacks readOnlyRootFilesystem or allowPrivilegeEscalation: false")
if "networkpolicy.yaml" not in load("kustomization.yaml")["resources"]:
    problems.append("the kustomization leaves out networkpolicy.yaml")
np = load("networkpolicy.yaml")["spec"]
if sorted(np.get("policyTypes", [])) != ["Egress", "Ingress"]:
    problems.append("the NetworkPolicy does not restrict both directions")
listen = int(yaml.safe_load(load("configmap.yaml")["data"]["ferry.yaml"])["listen"].rsplit(":", 1)[1])
def ports(rules):
    if any("ports" not in rule for rule in rules):
        return None  # a rule without ports allows every port
    return sorted((p.get("protocol", "TCP"), p["port"]) for rule in rules for p in rule["ports"])
ingress = ports(np.get("ingress", []))
if ingress != [("TCP", listen)]:
    problems.append(f"ingress is not the listen port {listen} alone: {ingress}")
egress = ports(np.get("egress", []))
want = [("TCP", 53), ("TCP", 80), ("TCP", 443), ("UDP", 53)]
if kind == "cluster":
    want = sorted(want + [("TCP", 4222)])
if egress != want:
    problems.append(f"egress is not DNS, HTTP(S){' and NATS' if kind == 'cluster' else ''} alone: {egress}")
if kind == "cluster":
    sts = load("statefulset.yaml")
    config = yaml.safe_load(load("configmap.yaml")["data"]["ferry.yaml"])
    cluster = config.get("cluster") or {}
    secret = load("secret.yaml")["stringData"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    ferry = pod["containers"][0]
    # A StatefulSet's pods keep their names (the nodes' names) across restarts.
    if sts["kind"] != "StatefulSet" or sts["spec"].get("replicas") != 3:
        problems.append("not a StatefulSet of three replicas")
    if sts["spec"].get("podManagementPolicy") != "Parallel":
        problems.append("the nodes are not started in parallel")
    if "name" in cluster:
        problems.append("the config names the node: all three would have one name")
    probes = {k: ferry.get(k, {}).get("httpGet", {}).get("path") for k in ("livenessProbe", "readinessProbe")}
    if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
        problems.append(f"the probes are not /healthz and /readyz: {probes}")
    if not ferry.get("resources", {}).get("limits") or not ferry.get("resources", {}).get("requests"):
        problems.append("the container has no resource requests and limits")
    resources = load("kustomization.yaml")["resources"]
    if "poddisruptionbudget.yaml" not in resources:
        problems.append("the kustomization leaves out poddisruptionbudget.yaml")
    pdb = load("poddisruptionbudget.yaml")
    if pdb.get("kind") != "PodDisruptionBudget" or pdb["spec"].get("maxUnavailable") != 1 or \
            pdb["spec"]["selector"]["matchLabels"].items() - labels.items():
        problems.append("no PodDisruptionBudget of one for the nodes")
    pm = load("podmonitor.yaml")["spec"]["podMetricsEndpoints"][0]["authorization"]["credentials"]
    if pm != {"name": "ferry-secrets", "key": "FERRY_METRICS_TOKEN"} or config.get("metrics_token_env") != "FERRY_METRICS_TOKEN":
        problems.append(f"the PodMonitor does not scrape with the metrics token: {pm}")
    if cluster.get("replicas") != 3 or len(cluster.get("servers", [])) != 3:
        problems.append(f"the config is not a cluster on three NATS servers with 3 replicas: {cluster}")
    if cluster.get("password_env") not in secret:
        problems.append(f"the Secret lacks the NATS password {cluster.get('password_env')}")
    # The NATS chart's values: a JetStream cluster of three, whose user is
    # Ferry's and whose password is the one Ferry reads.
    nats = load("nats-values.yaml")
    nc = nats["config"]
    if nc["cluster"].get("enabled") is not True or nc["cluster"].get("replicas") != 3 or \
            nc["jetstream"].get("enabled") is not True or not nc["jetstream"]["fileStore"]["pvc"].get("size"):
        problems.append("nats-values.yaml is not a 3-server JetStream cluster on volumes")
    users = [u for a in nc["merge"]["accounts"].values() if a.get("jetstream") == "enabled" for u in a["users"]]
    env = nats["container"]["env"]
    refs = {k: v["valueFrom"]["secretKeyRef"] for k, v in env.items()}
    if not any(u["user"] == cluster.get("user") and
               refs.get(u["password"].strip("<> ").lstrip("$")) == {"name": "ferry-secrets", "key": cluster.get("password_env")}
               for u in users):
        problems.append(f"no NATS user {cluster.get('user')} with JetStream and the Secret's {cluster.get('password_env')}")
    for server in cluster.get("servers", []):
        if not server.startswith("nats://nats-") or ".nats-headless:4222" not in server:
            problems.append(f"{server} is not a server of the chart's release nats")
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
python3 "$TEST_TMP/k8s_check.py" "$DEPLOY/k8s" single || fail "deploy/k8s: see above"
pass "deploy/k8s: no service account token, non-root, read-only root, fsGroup; NetworkPolicy: in on the listen port, out DNS and 80/443"
python3 "$TEST_TMP/k8s_check.py" "$DEPLOY/k8s-cluster" cluster || fail "deploy/k8s-cluster: see above"
pass "deploy/k8s-cluster: the same, out also NATS (4222); three nodes with stable names, probes, resources, a PodDisruptionBudget of one; the NATS values match the config"

# Every example config (and the ConfigMap's) passes --check-config, with the
# secrets they name present, and nothing created.
export FERRY_WEBHOOK_TOKEN=x FERRY_API_TOKEN=y PRIMARY_PASSWORD=p PLATFORM_PASSWORD=p PAYMENTS_PASSWORD=p \
  SEARCH_PASSWORD=p BUILD_PASSWORD=p US_EAST_PASSWORD=p EU_WEST_PASSWORD=p AP_SOUTH_PASSWORD=p EU_PASSWORD=p \
  AP_PASSWORD=p FERRY_DEMO_WEBHOOK_TOKEN=d FERRY_METRICS_TOKEN=m NATS_PASSWORD=n
mkdir -p "$TEST_TMP/examples"
cp "$DEPLOY"/examples/*.yaml "$TEST_TMP/examples/"
(umask 077 && echo secret >"$TEST_TMP/examples/standby.password")
for k8s in k8s k8s-cluster; do
  python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["ferry.yaml"])' \
    "$DEPLOY/$k8s/configmap.yaml" >"$TEST_TMP/examples/$k8s-configmap.yaml"
done
[[ -f "$TEST_TMP/examples/cluster.yaml" ]] || fail "no deploy/examples/cluster.yaml"
for f in "$TEST_TMP"/examples/*.yaml; do
  "$FERRY" serve --check-config -c "$f" 2>"$TEST_TMP/check.err" ||
    fail "$(basename "$f"): $(cat "$TEST_TMP/check.err")"
  grep -q 'is valid' "$TEST_TMP/check.err" || fail "$(basename "$f"): $(cat "$TEST_TMP/check.err")"
  if grep -q 'readable by group or others' "$TEST_TMP/check.err"; then fail "$(basename "$f"): $(cat "$TEST_TMP/check.err")"; fi
done
# As the systemd unit has it: the config a credential in a directory of its
# own, a relative password_file beside it another credential.
creds=$TEST_TMP/credentials/ferry.service
mkdir -p "$creds"
install -m 0400 "$TEST_TMP/examples/dr-mirror.yaml" "$creds/ferry.yaml"
install -m 0400 "$TEST_TMP/examples/standby.password" "$creds/standby.password"
(cd / && CREDENTIALS_DIRECTORY=$creds "$FERRY" serve --check-config -c "$creds/ferry.yaml") 2>"$TEST_TMP/check.err" ||
  fail "dr-mirror.yaml as a credential: $(cat "$TEST_TMP/check.err")"
if grep -q 'readable' "$TEST_TMP/check.err"; then fail "dr-mirror.yaml as a credential: $(cat "$TEST_TMP/check.err")"; fi
# The Secrets as shipped: their values are placeholders, refused before
# anything starts, all together and each alone among real ones (so each is
# one the config reads).
for k8s in k8s k8s-cluster; do
  python3 -c 'import shlex, sys, yaml
for k, v in yaml.safe_load(open(sys.argv[1]))["stringData"].items():
    print(f"{k} {shlex.quote(v)}")' "$DEPLOY/$k8s/secret.yaml" >"$TEST_TMP/secret.values"
  (
    while read -r key value; do eval "export $key=$value"; done <"$TEST_TMP/secret.values"
    rc=0
    "$FERRY" serve --check-config -c "$TEST_TMP/examples/$k8s-configmap.yaml" 2>"$TEST_TMP/check.err" || rc=$?
    assert_eq "$rc" 2 "--check-config with deploy/$k8s/secret.yaml's values"
    grep -q 'is the shipped placeholder; set a real secret' "$TEST_TMP/check.err" ||
      fail "the placeholder is not named: $(cat "$TEST_TMP/check.err")"
  )
  while read -r key value; do
    (
      eval "export $key=$value"
      rc=0
      "$FERRY" serve --check-config -c "$TEST_TMP/examples/$k8s-configmap.yaml" </dev/null 2>"$TEST_TMP/check.err" || rc=$?
      assert_eq "$rc" 2 "--check-config with deploy/$k8s/secret.yaml's $key alone"
      grep -q "$key is the shipped placeholder; set a real secret" "$TEST_TMP/check.err" ||
        fail "deploy/$k8s/secret.yaml's $key is not refused by name: $(cat "$TEST_TMP/check.err")"
    )
  done <"$TEST_TMP/secret.values"
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
pass "every example config passes --check-config (also from a credentials directory); a missing secret is named; each of the Secrets' placeholders is refused"

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
