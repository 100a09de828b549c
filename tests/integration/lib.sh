# shellcheck shell=bash
# Ferry integration-test library. Source it from a tests/integration/*_test.sh
# script (bash, `set -euo pipefail` friendly):
#
#   #!/usr/bin/env bash
#   set -euo pipefail
#   source "$(dirname "$0")/lib.sh"
#   registry_start src
#   registry_start dst --htpasswd alice:secret
#   fixturegen push --registry "$src_ADDR" --repo app --tag v1 >"$TEST_TMP/app.json"
#   ...
#   pass "copied"
#
# It makes a per-test temp dir ($TEST_TMP), and at EXIT stops every process it
# started (by PID: TERM, up to 5 s, then KILL), prints the tail of their logs
# when the test failed, and removes $TEST_TMP unless KEEP_TMP=1.
# Do not set your own EXIT trap (it would replace the cleanup); use on_exit.
# See tests/README.md for the full list of functions.

if [[ -n "${_ITEST_LIB_LOADED:-}" ]]; then
  return 0
fi
_ITEST_LIB_LOADED=1

: "${FERRY_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FERRY_BUILD_DIR:=/tmp}"
export FERRY_SOURCE_DIR FERRY_BUILD_DIR
FIXTUREGEN="$FERRY_SOURCE_DIR/tests/fixtures/fixturegen.py"
TOKEN_ISSUER_PY="$FERRY_SOURCE_DIR/tests/fixtures/token_issuer.py"
CREDHELPER_PY="$FERRY_SOURCE_DIR/tests/fixtures/docker-credential-ferrytest"
# The script that was run (also when sourced through chaos/lib.sh).
TEST_NAME=$(basename "${BASH_SOURCE[-1]:-$0}" .sh)
export FIXTUREGEN TEST_NAME

mkdir -p "$FERRY_BUILD_DIR"
TEST_TMP=$(mktemp -d "${FERRY_BUILD_DIR%/}/itest.XXXXXX")
export TEST_TMP

_ITEST_MAIN_PID=$BASHPID
declare -A _ITEST_PIDS=()     # tracked name -> pid (every process we started)
declare -A _ITEST_LOGS=()     # tracked name -> log file
declare -a _ITEST_ORDER=()    # tracked names, start order
declare -a _ITEST_ON_EXIT=()  # commands run first at exit
# Safety net for a test shell killed with SIGKILL (no EXIT trap runs then):
# every process we start gets the kernel's parent-death signal.
_ITEST_SPAWN=()
if setpriv --pdeathsig KILL -- true 2>/dev/null; then
  _ITEST_SPAWN=(setpriv --pdeathsig KILL --)
fi
_ITEST_PROBE_UA=ferry-itest-probe  # readiness probes; not counted as requests
declare -A _REG_PORT=() _REG_ADDR=() _REG_CONFIG=() _REG_LOG=()
declare -A _REG_SCHEME=() _REG_PROBE=() # https registries, and curl options to probe them
declare -A _REG_NOTIFY_TOKEN=()           # bearer token a registry's notifications carry
_ITEST_TOKEN_STARTED=0

# ---------------------------------------------------------------- messages

fail() {
  _ITEST_FAIL_MSG="FAIL: $*"
  echo "$_ITEST_FAIL_MSG" >&2
  exit 1
}

pass() {
  echo "PASS: $*"
}

note() {
  echo "--- $*" >&2
}

# assert_eq ACTUAL EXPECTED MSG
assert_eq() {
  if [[ "$1" != "$2" ]]; then
    fail "${3:-assert_eq}: expected '$2', got '$1'"
  fi
}

# assert_ne ACTUAL UNEXPECTED MSG
assert_ne() {
  if [[ "$1" == "$2" ]]; then
    fail "${3:-assert_ne}: did not expect '$2'"
  fi
}

# ------------------------------------------------------------------ timing

_itest_now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  echo $((t / 1000))
}

# wait_until TIMEOUT_S CMD... : run CMD every 0.1 s until it succeeds
# (returns 0) or TIMEOUT_S seconds (may be fractional) have passed (returns 1).
wait_until() {
  local timeout=$1
  shift
  local deadline
  deadline=$(($(_itest_now_ms) + $(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000 }')))
  while true; do
    if "$@"; then
      return 0
    fi
    if (($(_itest_now_ms) >= deadline)); then
      return 1
    fi
    sleep 0.1
  done
}

# ----------------------------------------------------------- misc helpers

# free_port [--ipv6] : print a currently free TCP port on 127.0.0.1 (or ::1)
free_port() {
  local fam=AF_INET host=127.0.0.1
  if [[ "${1:-}" == "--ipv6" ]]; then
    fam=AF_INET6 host=::1
  fi
  python3 -c "import socket
s = socket.socket(socket.$fam, socket.SOCK_STREAM)
s.bind(('$host', 0))
print(s.getsockname()[1])
s.close()"
}

# ferry_bin : path of the ferry binary ($FERRY_BIN, else $FERRY_SOURCE_DIR/build/ferry)
ferry_bin() {
  echo "${FERRY_BIN:-$FERRY_SOURCE_DIR/build/ferry}"
}

# require_ferry : fail unless the ferry binary exists and is executable
require_ferry() {
  local bin
  bin=$(ferry_bin)
  [[ -x "$bin" ]] || fail "ferry binary not found at $bin (build it, or set FERRY_BIN)"
}

# fixturegen ARGS... : run tests/fixtures/fixturegen.py
fixturegen() {
  python3 "$FIXTUREGEN" "$@"
}

# digest_of : sha256:<hex> of stdin
digest_of() {
  echo "sha256:$(sha256sum | cut -d' ' -f1)"
}

# skopeo_raw HOST:PORT/REPO:TAG|@DIGEST [skopeo options...] : raw manifest bytes
skopeo_raw() {
  local ref=$1
  shift
  skopeo inspect --raw --tls-verify=false "$@" "docker://$ref"
}

# on_exit CMD... : run CMD (via eval) at exit, before processes are stopped
on_exit() {
  _ITEST_ON_EXIT+=("$*")
}

_itest_valid_name() {
  [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail "invalid name '$1' (want a shell identifier)"
}

# ---------------------------------------------------------------- processes

_itest_alive() {
  kill -0 "$1" 2>/dev/null
}

_itest_track() { # KEY PID LOG
  if [[ -z "${_ITEST_LOGS[$1]:-}" ]]; then
    _ITEST_ORDER+=("$1")
  fi
  _ITEST_PIDS[$1]=$2
  _ITEST_LOGS[$1]=$3
}

# _itest_stop_pids SIGNAL PID... : signal, poll up to 5 s, then KILL and reap
_itest_stop_pids() {
  local sig=$1 pid i alive
  shift
  for pid in "$@"; do
    kill "-$sig" "$pid" 2>/dev/null || true
  done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for pid in "$@"; do
      if _itest_alive "$pid"; then
        alive=1
        break
      fi
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "$@"; do
    if _itest_alive "$pid"; then
      echo "lib.sh: pid $pid ignored SIG$sig for 5 s; killing" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "$@"; do
    wait "$pid" 2>/dev/null || true
  done
}

# start_bg NAME CMD... : start CMD in the background, output to
# $TEST_TMP/NAME.log; sets NAME_PID. Stopped (by PID) at exit or by stop_bg.
# CMD should be one process (use `exec` in wrapper scripts): only it is signalled.
start_bg() {
  local name=$1
  shift
  _itest_valid_name "$name"
  if [[ -n "${_ITEST_PIDS[bg:$name]:-}" ]]; then
    fail "start_bg: '$name' is already running"
  fi
  "${_ITEST_SPAWN[@]}" "$@" >"$TEST_TMP/$name.log" 2>&1 &
  local pid=$!
  _itest_track "bg:$name" "$pid" "$TEST_TMP/$name.log"
  declare -g "${name}_PID=$pid"
}

# stop_bg NAME [--kill] : stop a start_bg process by PID (TERM, or KILL)
stop_bg() {
  local name=$1 sig=TERM
  [[ "${2:-}" == "--kill" ]] && sig=KILL
  local pid=${_ITEST_PIDS[bg:$name]:-}
  [[ -n "$pid" ]] || fail "stop_bg: '$name' is not running"
  _itest_stop_pids "$sig" "$pid"
  unset "_ITEST_PIDS[bg:$name]"
}

_itest_cleanup() {
  local rc=$?
  if [[ "$BASHPID" != "$_ITEST_MAIN_PID" ]]; then
    return "$rc"
  fi
  trap - EXIT
  set +eu
  local cmd key
  for cmd in "${_ITEST_ON_EXIT[@]}"; do
    eval "$cmd" || echo "lib.sh: on_exit '$cmd' failed" >&2
  done
  local pids=()
  for key in "${_ITEST_ORDER[@]}"; do
    if [[ -n "${_ITEST_PIDS[$key]:-}" ]]; then
      pids+=("${_ITEST_PIDS[$key]}")
    fi
  done
  if ((${#pids[@]})); then
    _itest_stop_pids TERM "${pids[@]}"
  fi
  # A sanitizer's report in any output the test kept fails it, even when the
  # process that wrote it was stopped (by PID) and its exit status never read.
  local reports
  reports=$(grep -lE '==[0-9]+==ERROR: (Address|Leak)Sanitizer|\.[ch]:[0-9]+:[0-9]+: runtime error: ' \
    "$TEST_TMP"/*.log "$TEST_TMP"/*.err "$TEST_TMP"/*.out 2>/dev/null)
  if [[ -n "$reports" ]] && ((rc == 0)); then
    rc=1
    _ITEST_FAIL_MSG="a sanitizer reported in $(echo "$reports" | xargs -n1 basename | tr '\n' ' '): $(grep -hm2 -E '==[0-9]+==ERROR|runtime error: ' $reports | head -2 | tr '\n' ' ')"
    echo "FAIL: $_ITEST_FAIL_MSG" >&2
  fi
  if ((rc != 0)); then
    local lines=${ITEST_LOG_LINES:-25}
    for key in "${_ITEST_ORDER[@]}"; do
      local f=${_ITEST_LOGS[$key]}
      if [[ -s "$f" ]]; then
        echo "----- last $lines lines of $f ($key) -----" >&2
        tail -n "$lines" "$f" >&2
      fi
    done
    echo "----- $TEST_NAME failed (exit $rc)${_ITEST_FAIL_MSG:+: $_ITEST_FAIL_MSG} -----" >&2
  fi
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then
    echo "lib.sh: kept $TEST_TMP" >&2
  else
    rm -rf "$TEST_TMP"
  fi
  exit "$rc"
}
trap _itest_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -------------------------------------------------------------- token auth

# token_issuer_start [--user U:P[:ACTIONS]]... [--expires N] [--hard-expiry]
#                    [--anonymous ACTIONS] [--password-dir DIR]
# Starts tests/fixtures/token_issuer.py once per test with a fresh RSA key and
# self-signed cert. Without --user: user $TOKEN_USER:$TOKEN_PASSWORD
# (default ferry:ferrypass). --password-dir DIR (made if missing) also accepts
# the expiring credentials filed there (password_mint writes them; so does
# docker-credential-ferrytest). Sets TOKEN_PORT TOKEN_ADDR TOKEN_REALM
# TOKEN_LOG TOKEN_CERT TOKEN_KEY TOKEN_ISSUER, and TOKEN_PASSWORD_DIR with
# --password-dir. registry_start --token calls it if needed.
# shellcheck disable=SC2120 # options are optional
token_issuer_start() {
  if ((_ITEST_TOKEN_STARTED)); then
    fail "token_issuer_start: already running on port $TOKEN_PORT"
  fi
  _ITEST_TOKEN_STARTED=1
  local args=() users=0
  while (($#)); do
    case $1 in
      --user) args+=(--user "$2"); users=1; shift 2 ;;
      --expires | --anonymous) args+=("$1" "$2"); shift 2 ;;
      --hard-expiry) args+=("$1"); shift ;;
      --password-dir)
        mkdir -p "$2"
        TOKEN_PASSWORD_DIR=$(cd "$2" && pwd)
        export TOKEN_PASSWORD_DIR
        args+=(--password-dir "$TOKEN_PASSWORD_DIR")
        shift 2
        ;;
      *) fail "token_issuer_start: unknown option $1" ;;
    esac
  done
  : "${TOKEN_USER:=ferry}" "${TOKEN_PASSWORD:=ferrypass}"
  if ((!users)); then
    args+=(--user "$TOKEN_USER:$TOKEN_PASSWORD")
  fi
  local dir="$TEST_TMP/token"
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
    -subj "/CN=ferry-test-token-issuer" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 ||
    fail "openssl could not make the token key: $(cat "$dir/openssl.log")"
  TOKEN_ISSUER=ferry-test-issuer
  TOKEN_KEY="$dir/key.pem"
  TOKEN_CERT="$dir/cert.pem"
  TOKEN_LOG="$dir/requests.jsonl"
  : >"$TOKEN_LOG"
  "${_ITEST_SPAWN[@]}" python3 "$TOKEN_ISSUER_PY" --port 0 --ready-file "$dir/port" \
    --key "$TOKEN_KEY" --cert "$TOKEN_CERT" --issuer "$TOKEN_ISSUER" \
    --log "$TOKEN_LOG" "${args[@]}" >"$TEST_TMP/token_issuer.log" 2>&1 &
  local pid=$!
  _itest_track token "$pid" "$TEST_TMP/token_issuer.log"
  # shellcheck disable=SC2317 # called through wait_until
  _token_ready() { [[ -s "$TEST_TMP/token/port" ]] || ! _itest_alive "$pid"; }
  wait_until 15 _token_ready || fail "token issuer did not start in 15 s"
  _itest_alive "$pid" || fail "token issuer exited: $(cat "$TEST_TMP/token_issuer.log")"
  TOKEN_PORT=$(cat "$dir/port")
  TOKEN_ADDR="127.0.0.1:$TOKEN_PORT"
  TOKEN_REALM="http://$TOKEN_ADDR/token"
  export TOKEN_PORT TOKEN_ADDR TOKEN_REALM TOKEN_LOG TOKEN_CERT TOKEN_KEY TOKEN_ISSUER
  export TOKEN_USER TOKEN_PASSWORD
}

# token_request_count [SCOPE_REGEX] : successful (200) token requests so far,
# optionally only those with a requested scope matching SCOPE_REGEX (jq test()).
token_request_count() {
  [[ -n "${TOKEN_LOG:-}" ]] || fail "token_request_count: no token issuer"
  jq -s --arg re "${1:-}" \
    '[.[] | select(.status == 200) | select($re == "" or any(.scopes[]; test($re)))] | length' \
    "$TOKEN_LOG"
}

# password_mint USER TTL_S [refresh] : file a new random secret for USER in
# $TOKEN_PASSWORD_DIR, valid TTL_S seconds from now (fractional allowed; a
# negative TTL makes one already expired); with `refresh`, as a refresh
# (identity) token. Prints the secret. The file is written atomically.
password_mint() {
  [[ -n "${TOKEN_PASSWORD_DIR:-}" ]] || fail "password_mint: no token issuer with --password-dir"
  python3 - "$TOKEN_PASSWORD_DIR" "$1" "$2" "${3:-password}" <<'PY'
import hashlib, json, os, secrets, sys, time
pdir, user, ttl, kind = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
if kind not in ("password", "refresh"):
    sys.exit("password_mint: kind must be refresh or nothing, got %r" % kind)
secret = ("ftr-" if kind == "refresh" else "ftp-") + secrets.token_urlsafe(24)
path = os.path.join(pdir, hashlib.sha256(secret.encode()).hexdigest())
with open(path + ".tmp", "w") as f:
    json.dump({"user": user, "expires": time.time() + ttl, "actions": "*", "kind": kind}, f)
os.replace(path + ".tmp", path)
print(secret)
PY
}

# token_manifest_digest NAME REPO REF : the digest REPO:REF names at token
# registry NAME (registry_start NAME --token), read with a pull token of
# $TOKEN_USER (not through Ferry's credentials), or "404" when it is absent
token_manifest_digest() {
  local name=$1 repo=$2 ref=$3 service token
  service="${_REG_ADDR[$name]:+$name.registry.test}"
  [[ -n "$service" ]] || fail "token_manifest_digest: unknown registry '$name'"
  token=$(curl -sf --max-time 10 -A ferry-itest-watch -u "$TOKEN_USER:$TOKEN_PASSWORD" \
    "$TOKEN_REALM?service=$service&scope=repository:$repo:pull" | jq -r .token) ||
    fail "token_manifest_digest: no token from $TOKEN_REALM"
  curl -s -I --max-time 10 -A ferry-itest-watch -H "Authorization: Bearer $token" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "${_REG_SCHEME[$name]:-http}://${_REG_ADDR[$name]}/v2/$repo/manifests/$ref" | tr -d '\r' |
    awk 'NR == 1 { s = $2 } tolower($1) == "docker-content-digest:" { d = $2 } END { print (s == 404 ? "404" : d) }'
}

# credhelper_install DIR : put docker-credential-ferrytest (the test credential
# helper, tests/fixtures/docker-credential-ferrytest) into DIR (made if
# missing) as a symlink; prepend DIR to PATH for the process that should find
# it. The helper is configured by FERRYTEST_* variables (see the fixture).
credhelper_install() {
  local dir=$1
  mkdir -p "$dir"
  if [[ -x "$CREDHELPER_PY" ]]; then
    ln -sfn "$CREDHELPER_PY" "$dir/docker-credential-ferrytest"
  else
    # The executable bit got lost (a checkout that dropped it): a wrapper.
    printf '#!/bin/sh\nexec python3 "%s" "$@"\n' "$CREDHELPER_PY" >"$dir/docker-credential-ferrytest"
    chmod +x "$dir/docker-credential-ferrytest"
  fi
}

# ---------------------------------------------------------------- registries

_reg_ready() { # NAME PID
  local code
  _itest_alive "$2" || return 0
  local probe=()
  [[ -n "${_REG_PROBE[$1]:-}" ]] && read -r -a probe <<<"${_REG_PROBE[$1]}"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -A "$_ITEST_PROBE_UA" "${probe[@]}" \
    "${_REG_SCHEME[$1]:-http}://${_REG_ADDR[$1]}/v2/" || true)
  [[ "$code" == 200 || "$code" == 401 ]]
}

_reg_launch() { # NAME : start from the written config, wait until /v2/ answers
  local name=$1 pid var unset_env=()
  # Distribution reads REGISTRY_* variables as config overrides (skopeo's
  # REGISTRY_AUTH_FILE would break the auth section): start it without them.
  for var in $(compgen -e); do
    [[ "$var" == REGISTRY_* ]] && unset_env+=(-u "$var")
  done
  env "${unset_env[@]}" "${_ITEST_SPAWN[@]}" docker-registry serve "${_REG_CONFIG[$name]}" >>"${_REG_LOG[$name]}" 2>&1 &
  pid=$!
  _itest_track "registry:$name" "$pid" "${_REG_LOG[$name]}"
  if ! wait_until "${REGISTRY_START_TIMEOUT:-10}" _reg_ready "$name" "$pid"; then
    return 2
  fi
  if ! _itest_alive "$pid"; then
    wait "$pid" 2>/dev/null || true
    unset "_ITEST_PIDS[registry:$name]"
    return 1
  fi
  return 0
}

_reg_write_config() { # NAME PORT HOST DELETE READONLY AUTH_YAML NOTIFY_URL [TLS_YAML]
  local name=$1 port=$2 host=$3 delete=$4 ro=$5 auth=$6 notify=$7 tls=${8:-}
  local addr="$host:$port"
  [[ "$host" == *:* ]] && addr="[$host]:$port"
  {
    cat <<EOF
version: 0.1
log:
  level: ${ITEST_REGISTRY_LOG_LEVEL:-info}
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: "$TEST_TMP/$name"
  delete:
    enabled: $delete
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: $ro
http:
  addr: "$addr"
  secret: ferry-itest-secret-$name
$tls
health:
  storagedriver:
    enabled: false
EOF
    if [[ -n "$auth" ]]; then
      printf '%s\n' "$auth"
    fi
    if [[ -n "$notify" ]]; then
      cat <<EOF
notifications:
  events:
    includereferences: true
  endpoints:
EOF
      local url k=0 suffix=""
      for url in $notify; do
        k=$((k + 1))
        ((k > 1)) && suffix="-$k"
        cat <<EOF
    - name: $name-notify$suffix
      url: "$url"
      timeout: 1s
      threshold: 5
      backoff: 1s
EOF
        if [[ -n "${_REG_NOTIFY_TOKEN[$name]:-}" ]]; then
          cat <<EOF
      headers:
        Authorization: ["Bearer ${_REG_NOTIFY_TOKEN[$name]}"]
EOF
        fi
      done
    fi
  } >"${_REG_CONFIG[$name]}"
  _REG_ADDR[$name]=$addr
}

# registry_start NAME [--htpasswd USER:PASS]... [--token] [--notify URL]...
#                [--delete] [--readonly] [--ipv6] [--port PORT]
#                [--tls CERT KEY [--client-ca CA CLIENT_CERT CLIENT_KEY]]
#                [--notify-token TOKEN]   (notifications carry "Authorization: Bearer TOKEN")
# --tls serves HTTPS with that certificate (NAME_URL is then https://...);
# --client-ca also requires client certificates signed by CA (the readiness
# probe presents CLIENT_CERT/CLIENT_KEY).
# Starts a Distribution registry with storage $TEST_TMP/NAME, config
# $TEST_TMP/NAME.yml, log $TEST_TMP/NAME.log; waits until GET /v2/ answers
# 200 or 401. Sets NAME_PORT NAME_ADDR (127.0.0.1:PORT or [::1]:PORT)
# NAME_URL (http://ADDR) NAME_STORAGE NAME_LOG NAME_CONFIG NAME_PID, and with
# --token NAME_SERVICE (the token audience, "NAME.registry.test").
registry_start() {
  local name=$1
  shift
  _itest_valid_name "$name"
  if [[ -n "${_ITEST_PIDS[registry:$name]:-}" ]]; then
    fail "registry_start: '$name' is already running"
  fi
  local users=() token=0 notify="" delete=false ro=false host=127.0.0.1 port=""
  local tls_cert="" tls_key="" client_ca="" probe_cert="" probe_key="" tls=""
  while (($#)); do
    case $1 in
      --htpasswd) users+=("$2"); shift 2 ;;
      --token) token=1; shift ;;
      --notify) notify+="${notify:+ }$2"; shift 2 ;;
      --notify-token) _REG_NOTIFY_TOKEN[$name]=$2; shift 2 ;;
      --delete) delete=true; shift ;;
      --readonly) ro=true; shift ;;
      --ipv6) host=::1; shift ;;
      --port) port=$2; shift 2 ;;
      --tls) tls_cert=$2; tls_key=$3; shift 3 ;;
      --client-ca) client_ca=$2; probe_cert=$3; probe_key=$4; shift 4 ;;
      *) fail "registry_start: unknown option $1" ;;
    esac
  done
  if ((${#users[@]})) && ((token)); then
    fail "registry_start: --htpasswd and --token exclude each other"
  fi
  local url
  for url in $notify; do
    if [[ ! "$url" =~ ^https?://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(/|$) ]]; then
      fail "registry_start: --notify URL must be on loopback, got '$url'"
    fi
  done
  local auth="" service="$name.registry.test"
  if ((${#users[@]})); then
    local u htfile="$TEST_TMP/$name.htpasswd"
    : >"$htfile"
    for u in "${users[@]}"; do
      [[ "$u" == *:* ]] || fail "registry_start: --htpasswd wants USER:PASS"
      htpasswd -Bbn "${u%%:*}" "${u#*:}" | sed '/^$/d' >>"$htfile"
    done
    auth="auth:
  htpasswd:
    realm: ferry-itest-$name
    path: \"$htfile\""
  elif ((token)); then
    if ((!_ITEST_TOKEN_STARTED)); then
      # shellcheck disable=SC2119
      token_issuer_start
    fi
    auth="auth:
  token:
    realm: \"$TOKEN_REALM\"
    service: $service
    issuer: $TOKEN_ISSUER
    rootcertbundle: \"$TOKEN_CERT\""
    declare -g "${name}_SERVICE=$service"
  fi
  if [[ -n "$tls_cert" ]]; then
    tls="  tls:
    certificate: \"$tls_cert\"
    key: \"$tls_key\""
    _REG_SCHEME[$name]=https
    _REG_PROBE[$name]="-k"
    if [[ -n "$client_ca" ]]; then
      tls="$tls
    clientcas:
      - \"$client_ca\""
      _REG_PROBE[$name]="-k --cert $probe_cert --key $probe_key"
    fi
  fi
  mkdir -p "$TEST_TMP/$name"
  _REG_CONFIG[$name]="$TEST_TMP/$name.yml"
  _REG_LOG[$name]="$TEST_TMP/$name.log"
  : >"${_REG_LOG[$name]}"
  local fixed=0 attempt rc
  [[ -n "$port" ]] && fixed=1
  for attempt in 1 2 3; do
    if ((!fixed)); then
      if [[ "$host" == ::1 ]]; then port=$(free_port --ipv6); else port=$(free_port); fi
    fi
    _reg_write_config "$name" "$port" "$host" "$delete" "$ro" "$auth" "$notify" "$tls"
    rc=0
    _reg_launch "$name" || rc=$?
    if ((rc == 0)); then
      break
    fi
    if ((rc == 1)) && ((!fixed)) && grep -q 'address already in use' "${_REG_LOG[$name]}"; then
      note "registry $name: port $port was taken; retrying ($attempt)"
      continue
    fi
    if ((rc == 2)); then
      fail "registry $name did not answer on ${_REG_ADDR[$name]} within ${REGISTRY_START_TIMEOUT:-10} s"
    fi
    fail "registry $name exited at start; see ${_REG_LOG[$name]}"
  done
  ((rc == 0)) || fail "registry $name: no free port after 3 tries"
  _REG_PORT[$name]=$port
  declare -g "${name}_PORT=$port"
  declare -g "${name}_ADDR=${_REG_ADDR[$name]}"
  declare -g "${name}_URL=${_REG_SCHEME[$name]:-http}://${_REG_ADDR[$name]}"
  declare -g "${name}_STORAGE=$TEST_TMP/$name"
  declare -g "${name}_LOG=${_REG_LOG[$name]}"
  declare -g "${name}_CONFIG=${_REG_CONFIG[$name]}"
  declare -g "${name}_PID=${_ITEST_PIDS[registry:$name]}"
}

# registry_stop NAME [--kill] : stop by PID (TERM; --kill: SIGKILL, a crash)
registry_stop() {
  local name=$1 sig=TERM
  [[ "${2:-}" == "--kill" ]] && sig=KILL
  local pid=${_ITEST_PIDS[registry:$name]:-}
  [[ -n "$pid" ]] || fail "registry_stop: '$name' is not running"
  _itest_stop_pids "$sig" "$pid"
  unset "_ITEST_PIDS[registry:$name]"
}

# registry_restart NAME [--kill] : stop (if running), then start again on the
# same port and storage with the same config; the log is appended to, so
# request counts span restarts (uploads in progress survive: fixed http.secret)
registry_restart() {
  local name=$1
  [[ -n "${_REG_CONFIG[$name]:-}" ]] || fail "registry_restart: unknown registry '$name'"
  if [[ -n "${_ITEST_PIDS[registry:$name]:-}" ]]; then
    registry_stop "$@"
  fi
  local rc=0
  _reg_launch "$name" || rc=$?
  ((rc == 0)) || fail "registry $name did not come back on ${_REG_ADDR[$name]}"
  declare -g "${name}_PID=${_ITEST_PIDS[registry:$name]}"
}

# registry_access_log NAME : one line per request so far: "METHOD URI STATUS"
registry_access_log() {
  local log=${_REG_LOG[$1]:-}
  [[ -n "$log" ]] || fail "registry_access_log: unknown registry '$1'"
  grep -vF "\"$_ITEST_PROBE_UA\"" "$log" |
    sed -nE 's/^[^ ]+ - [^ ]+ \[[^]]+\] "([A-Z]+) ([^ ]+) HTTP\/[0-9.]+" ([0-9]{3}) .*/\1 \2 \3/p'
}

# registry_count_requests NAME METHOD PATH_REGEX [STATUS_REGEX [AGENT_REGEX]]
# Prints how many requests the registry logged whose method matches METHOD
# (an ERE, e.g. GET or 'GET|HEAD') and whose request URI (path plus query
# string, as sent) matches PATH_REGEX (an ERE anchored at both ends), and, if
# given, whose status matches STATUS_REGEX (e.g. '2..' or 401; '' = any) and
# whose User-Agent matches AGENT_REGEX (anchored; e.g. 'ferry.*' to leave out
# skopeo's and curl's requests).
# Readiness probes of lib.sh (User-Agent ferry-itest-probe) are never counted.
# Counts the access-log lines (combined log format), one per request:
#   127.0.0.1 - - [26/Nov/2026:15:47:52 +0000] "HEAD /v2/foo/blobs/sha256:... HTTP/1.1" 404 157 "" "curl/7.88.1"
registry_count_requests() {
  local name=$1 method=$2 path=$3 status=${4:-} agent=${5:-}
  [[ -n "$status" ]] || status='[0-9]{3}'
  [[ -n "$agent" ]] || agent='.*'
  local log=${_REG_LOG[$name]:-}
  [[ -n "$log" ]] || fail "registry_count_requests: unknown registry '$name'"
  grep -E "^[^ ]+ - [^ ]+ \\[[^]]+\\] \"($method) ($path) HTTP/[0-9.]+\" ($status) [0-9-]+ \"[^\"]*\" \"($agent)\"\$" "$log" |
    grep -cvF "\"$_ITEST_PROBE_UA\"" || true
}

# registry_wait_requests NAME METHOD PATH_REGEX MIN [TIMEOUT_S [STATUS_REGEX [AGENT_REGEX]]]
# Waits (default 5 s) until registry_count_requests reaches MIN; returns 1 on
# timeout. The access-log line is written when the server's handler returns,
# which can be just after the client got the last byte of a large response.
registry_wait_requests() {
  local name=$1 method=$2 path=$3 min=$4 timeout=${5:-5} status=${6:-} agent=${7:-}
  # shellcheck disable=SC2317 # called through wait_until
  _reg_count_ge() {
    (($(registry_count_requests "$name" "$method" "$path" "$status" "$agent") >= min))
  }
  wait_until "$timeout" _reg_count_ge
}

# test_pki DIR : a throwaway PKI in DIR (made): ca.pem/ca.key, a server
# certificate for 127.0.0.1 (server.pem/server.key) and a client certificate
# (client.pem/client.key), both signed by the CA, valid for two days
test_pki() {
  local pki=$1
  mkdir -p "$pki"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferry-test-ca \
      -keyout "$pki/ca.key" -out "$pki/ca.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$pki/server.key" \
        -out "$pki/server.csr" &&
      printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/san.ext" &&
      openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 2 -extfile "$pki/san.ext" -out "$pki/server.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=ferry-client -keyout "$pki/client.key" \
        -out "$pki/client.csr" &&
      openssl x509 -req -in "$pki/client.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 2 -out "$pki/client.pem"
  } >"$pki/openssl.log" 2>&1 || fail "test_pki: openssl failed: $(tail -n 3 "$pki/openssl.log")"
}

# ------------------------------------------------------------- ferry serve

# ferry_serve_start NAME CONFIG PORT : start `ferry serve -c CONFIG` (listening
# on 127.0.0.1:PORT as the config says) as background process NAME, and wait
# (bounded) until GET /healthz answers. Restarting the same NAME is allowed.
ferry_serve_start() {
  local name=$1 config=$2 port=$3
  if [[ -n "${_ITEST_PIDS[bg:$name]:-}" ]]; then
    unset "_ITEST_PIDS[bg:$name]"
  fi
  "${_ITEST_SPAWN[@]}" "$(ferry_bin)" serve -c "$config" >>"$TEST_TMP/$name.log" 2>&1 &
  local pid=$!
  _itest_track "bg:$name" "$pid" "$TEST_TMP/$name.log"
  declare -g "${name}_PID=$pid"
  wait_until 15 curl -sf -o /dev/null -A "$_ITEST_PROBE_UA" "http://127.0.0.1:$port/healthz" ||
    fail "ferry serve ($name) did not answer on port $port; log: $(tail -n 5 "$TEST_TMP/$name.log")"
}

# ---------------------------------------------------------------- webhooks

# distribution_events OUT ID_PREFIX REPO DIGEST MEDIA_TYPE TAG FIRST COUNT : a
# Distribution notification envelope (see tests/fixtures/distribution_events.py)
distribution_events() {
  python3 "$FERRY_SOURCE_DIR/tests/fixtures/distribution_events.py" "$@"
}

# event_envelope OUT ID ACTION REPO DIGEST TAG [MEDIA_TYPE [SIZE]] : one
# Distribution event (push or delete) in an envelope, written to OUT; an
# empty DIGEST, TAG, MEDIA_TYPE or SIZE leaves that target field out.
event_envelope() {
  local out=$1 id=$2 action=$3 repo=$4 dig=$5 tag=$6 mt=${7-application/vnd.oci.image.manifest.v1+json} size=${8:-}
  jq -cn --arg id "$id" --arg action "$action" --arg repo "$repo" --arg digest "$dig" --arg tag "$tag" \
    --arg mt "$mt" --arg size "$size" --arg ts "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" '
    {events: [{id: $id, timestamp: $ts, action: $action,
      target: ({repository: $repo}
        + (if $mt != "" then {mediaType: $mt} else {} end)
        + (if $digest != "" then {digest: $digest} else {} end)
        + (if $size != "" then {size: ($size | tonumber)} else {} end)
        + (if $tag != "" then {tag: $tag} else {} end))}]}' >"$out"
}

# events_post API FILE [TOKEN] : POST the Distribution notification envelope
# in FILE to API's webhook of source "src" (with a bearer TOKEN when one is
# given); prints the HTTP status; the answer is left in $TEST_TMP/resp
events_post() {
  local auth=()
  [[ -n "${3:-}" ]] && auth=(-H "Authorization: Bearer $3")
  curl -s --max-time 30 -o "$TEST_TMP/resp" -w '%{http_code}' -X POST \
    -H "Content-Type: application/vnd.docker.distribution.events.v1+json" \
    "${auth[@]}" --data-binary "@$2" "$1/v1/events/src"
}

# event_post API TOKEN ID ACTION REPO DIGEST TAG : post one Distribution event
# (event_envelope) to API's webhook of source "src" with a bearer TOKEN (none
# when TOKEN is empty); fails the test unless it is answered 200
event_post() {
  local api=$1 token=$2 f="$TEST_TMP/ev/$3.json" code
  shift 2
  mkdir -p "$TEST_TMP/ev"
  event_envelope "$f" "$@"
  code=$(events_post "$api" "$f" "$token")
  [[ "$code" == 200 ]] || fail "post $1: HTTP $code $(cat "$TEST_TMP/resp")"
}

# manifest_ref_digest BASE_URL REPO REF : the digest REPO:REF names there
# (any manifest type), or "404" when it is absent
manifest_ref_digest() {
  curl -s -I --max-time 10 -A ferry-itest-watch \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "$1/v2/$2/manifests/$3" | tr -d '\r' |
    awk 'NR == 1 { s = $2 } tolower($1) == "docker-content-digest:" { d = $2 } END { print (s == 404 ? "404" : d) }'
}

# manifest_arrives_within MS BASE_URL REPO TAG DIGEST : polls (every 150 ms)
# until BASE_URL's REPO:TAG names DIGEST; prints the milliseconds it took, and
# returns 1 if that did not happen within MS.
manifest_arrives_within() {
  local ms=$1 url=$2 repo=$3 tag=$4 want=$5 t0 d
  t0=$(_itest_now_ms)
  while :; do
    d=$(curl -s --max-time 1 -I -A ferry-itest-watch \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
      "$url/v2/$repo/manifests/$tag" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
    if [[ "$d" == "$want" ]]; then
      echo $(($(_itest_now_ms) - t0))
      return 0
    fi
    (($(_itest_now_ms) - t0 < ms)) || return 1
    sleep 0.15
  done
}
