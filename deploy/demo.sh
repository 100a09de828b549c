#!/usr/bin/env bash
# The demo `./build.sh demo` runs (after installing and building): three
# Distribution registries on loopback — a source and two destinations — with
# the source's notifications pointed at Ferry, `ferry serve` with
# deploy/examples/demo.yaml, a few sample images pushed by the project's
# fixture generator, replication shown until it is done (progress, then the
# `ferry status` table), the dashboard's URL, and then it keeps running until
# Ctrl-C. Everything it started is stopped, by PID, on the way out.
#
#   deploy/demo.sh            (build/ferry must exist: ./build.sh demo builds it)
#   DEMO_ONCE=1 deploy/demo.sh   stop once replication is shown (for tests)
#
# Ports: registries 127.0.0.1:15000-15002, Ferry 127.0.0.1:18780 (demo.yaml).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
FERRY=${FERRY_BIN:-$top/build/ferry}
CONFIG=$top/deploy/examples/demo.yaml
DIR=${DEMO_DIR:-$top/build/demo}
FIXTUREGEN=$top/tests/fixtures/fixturegen.py
PORTS=(15000 15001 15002)
NAMES=(source us-west eu-central)
API_PORT=18780
PIDS=()

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() {
  echo "demo: $*" >&2
  exit 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]} > 0)); then
    say "stopping ${#PIDS[@]} processes (${PIDS[*]})"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      local alive=0
      for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

[[ -x "$FERRY" ]] || die "no $FERRY: run ./build.sh demo"
for tool in docker-registry python3 curl; do
  command -v "$tool" >/dev/null || die "needs $tool (./build.sh demo installs it)"
done
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${PORTS[@]}" "$API_PORT"; do
  port_free "$p" || die "port 127.0.0.1:$p is taken; stop what uses it (the demo uses 15000-15002 and 18780)"
done

rm -rf "$DIR"
mkdir -p "$DIR"
TOKEN=demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export FERRY_DEMO_WEBHOOK_TOKEN=$TOKEN

# The registries; the source notifies Ferry of every push and delete.
for i in 0 1 2; do
  name=${NAMES[$i]}
  mkdir -p "$DIR/$name"
  {
    echo "version: 0.1"
    echo "log: { level: warn, accesslog: { disabled: true } }"
    echo "storage:"
    echo "  filesystem: { rootdirectory: $DIR/$name }"
    echo "  delete: { enabled: true }"
    echo "http: { addr: 127.0.0.1:${PORTS[$i]} }"
    if ((i == 0)); then
      echo "notifications:"
      echo "  endpoints:"
      echo "    - name: ferry"
      echo "      url: http://127.0.0.1:$API_PORT/v1/events/source"
      echo "      headers: { Authorization: [\"Bearer $TOKEN\"] }"
      echo "      timeout: 2s"
      echo "      threshold: 5"
      echo "      backoff: 1s"
    fi
  } >"$DIR/$name.yml"
  env -u REGISTRY_AUTH_FILE docker-registry serve "$DIR/$name.yml" >"$DIR/$name.log" 2>&1 &
  PIDS+=($!)
done
for p in "${PORTS[@]}"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$p/v2/" && break
    sleep 0.1
  done
  curl -sf -o /dev/null "http://127.0.0.1:$p/v2/" || die "registry on $p did not start; see $DIR/*.log"
done
say "registries: source 127.0.0.1:15000 -> us-west 127.0.0.1:15001, eu-central 127.0.0.1:15002 (mirror/...)"

# Ferry, with its own copy of demo.yaml so that data_dir lands in $DIR.
sed "s|^data_dir: .*|data_dir: $DIR/ferry-data|" "$CONFIG" >"$DIR/demo.yaml"
"$FERRY" serve -c "$DIR/demo.yaml" >"$DIR/ferry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$API_PORT/healthz" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$API_PORT/healthz" || die "ferry serve did not start; see $DIR/ferry.log"
say "ferry serve is up (config: deploy/examples/demo.yaml, log: $DIR/ferry.log)"

# Sample images: two services sharing base layers, a multi-arch tool with a
# signature (a referrer), and a second version of one service.
push() { python3 "$FIXTUREGEN" push --registry 127.0.0.1:15000 --compact "$@" >>"$DIR/pushed.jsonl"; }
say "pushing sample images to the source"
push --repo shop/web --tag v1 --seed 1 --layers 2 --layer-size 2M --base-seed demo --base-layers 2 --base-layer-size 8M
push --repo shop/api --tag v1 --seed 2 --layers 2 --layer-size 2M --base-seed demo --base-layers 2 --base-layer-size 8M
push --repo tools/cli --tag v3 --seed 3 --platforms linux/amd64,linux/arm64 --layers 1 --layer-size 4M --referrers 1
push --repo shop/web --tag v2 --seed 4 --layers 2 --layer-size 2M --base-seed demo --base-layers 2 --base-layer-size 8M

# Progress until the backlog is empty, then the deploy gate for every image.
progress() {
  curl -s "http://127.0.0.1:$API_PORT/v1/status" |
    python3 -c 'import json,sys; d=json.load(sys.stdin)["destinations"]; print(sum(x["completed"]+x["superseded"] for x in d), sum(x["backlog"] for x in d), sum(x["failed"] for x in d), int(sum(x["bytes"] for x in d)/1048576))' 2>/dev/null ||
    echo "0 1 0 0"
}
t0=$SECONDS
while :; do
  read -r complete backlog failed mib < <(progress)
  printf '\rdemo: replicating: %s jobs complete, %s in the backlog, %s failed, %s MiB uploaded   ' \
    "$complete" "$backlog" "$failed" "$mib"
  ((complete > 0 && backlog == 0)) && break
  ((SECONDS - t0 > 120)) && {
    echo
    die "replication did not finish in 120 s; see $DIR/ferry.log"
  }
  sleep 0.5
done
echo
while read -r line; do
  ref=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["repository"] + "@" + d["digest"])' "$line")
  "$FERRY" status -c "$DIR/demo.yaml" --wait --image "$ref" --timeout 60 >/dev/null ||
    die "$ref did not replicate; see $DIR/ferry.log"
done <"$DIR/pushed.jsonl"
say "done in $((SECONDS - t0)) s"
"$FERRY" status -c "$DIR/demo.yaml" || true
echo
"$FERRY" status -c "$DIR/demo.yaml" --image shop/web:v2 || true
echo
say "dashboard: http://127.0.0.1:$API_PORT/   metrics: http://127.0.0.1:$API_PORT/metrics"
say "try: push another image with"
echo "  python3 tests/fixtures/fixturegen.py push --registry 127.0.0.1:15000 --repo shop/web --tag v3 --seed 9"
if [[ "${DEMO_ONCE:-0}" == 1 ]]; then
  exit 0
fi
say "running; Ctrl-C stops everything"
while :; do sleep 1; done
