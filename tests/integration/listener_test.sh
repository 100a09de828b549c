#!/usr/bin/env bash
# The listener of `ferry serve` against a hostile network (issue 14):
#  - token: a wrong webhook or API token is answered 401 at the headers, with
#    1 MiB announced and not one byte of it sent;
#  - flood: 300 connections (from 5 loopback addresses) each send the
#    headers and all but the last byte of a 1 MiB webhook body with the right
#    token, and hold; /healthz answers within 1 s meanwhile and ferry's RSS
#    stays bounded (the default budget of bodies in flight, 64 MiB, answers
#    the rest 503 before reading them);
#  - budget: with request_body_budget 2 MiB, a third 1 MiB body is answered
#    503 with Retry-After while two are held, and taken once they are done;
#  - perip: a 65th connection from one address is closed unanswered while 64
#    are open (max_connections_per_ip, default 64), and taken once they close;
#  - types: a webhook POST (or, without api_token, a /v1/retry one) that is
#    not JSON (text/plain, a form, none) is answered 415 and journals nothing;
#    JSON with a charset and the Distribution type go through;
#  - host: without api_token, a Host that does not name the listener (DNS
#    rebinding) is answered 421, on the API, the dashboard and the webhook;
#    the listen address, localhost and the names of server_names (taken at a
#    reload) are answered; with the tokens, any Host is;
#  - frame: every answer carries X-Frame-Options: DENY and a policy with
#    frame-ancestors 'none';
#  - metrics: a metrics_token opens /metrics (so does the api_token) and
#    nothing else;
#  - warn: a non-loopback listen address without tokens gets one warning line
#    naming what is open (shown by --check-config, which binds nothing);
#  - config: the new keys' errors (metrics_token's sources are exclusive as
#    api_token's are, a budget under webhook_max_body, a port in server_names);
#  - tls: the listener speaks HTTPS with tls: {cert_file, key_file} (a
#    self-signed certificate made here); a bad certificate, a key of another
#    certificate and a missing key are one-line config errors at start (exit
#    2), and a key others can read is warned about.
# Every daemon stops cleanly at the end (under ASan+UBSan: nothing reported).
# LISTENER_SECTIONS="token flood ..." runs only those sections.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
SECTIONS=${LISTENER_SECTIONS:-token flood budget perip types host frame metrics warn config tls}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

HOOK_TOKEN=hook-$RANDOM$RANDOM$RANDOM
API_TOKEN=api-$RANDOM$RANDOM$RANDOM
METRICS_TOKEN=metrics-$RANDOM$RANDOM$RANDOM
export HOOK_TOKEN API_TOKEN METRICS_TOKEN
EVENTS_CT=application/vnd.docker.distribution.events.v1+json
DIGEST=sha256:$(printf listener | sha256sum | cut -d' ' -f1)
head -c 1048576 /dev/zero >"$TEST_TMP/mib"

# config FILE PORT|LISTEN [EXTRA_LINE...] : a daemon on 127.0.0.1:PORT (or
# LISTEN) whose registries are never asked (nothing listens there, nothing
# polls), with EXTRA_LINEs at the top.
config() {
  local file=$1 listen=$2
  shift 2
  [[ "$listen" == *:* ]] || listen=127.0.0.1:$listen
  {
    echo "data_dir: $TEST_TMP/data-$(basename "$file" .yaml)"
    echo "listen: \"$listen\""
    echo "poll_interval: 0"
    printf '%s\n' "$@"
    echo "registries:"
    echo "  src: { url: \"http://127.0.0.1:9\", poll: false }"
    echo "  dst: { url: \"http://127.0.0.1:1\" }"
    echo "rules:"
    echo "  - { name: r, source: src, repositories: [\"**\"], destinations: [{ registry: dst }] }"
  } >"$file"
  chmod 600 "$file"
}

event_body() { # ID [CONTENT_TYPE] : one push event, in the form the content type says
  if [[ "${2:-}" == "$EVENTS_CT" ]]; then
    printf '{"events":[{"id":"%s","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","repository":"team/app","tag":"v1"}}]}' "$1" "$DIGEST"
  else
    printf '{"events":[{"id":"%s","action":"push","repository":"team/app","digest":"%s","tag":"v1"}]}' "$1" "$DIGEST"
  fi
}

# A raw HTTP/1.1 client: sends the request head (and BODY_BYTES of body), then
# prints the status of the answer, "none" when the connection ended without
# one, or "timeout" after SECONDS. It never sends more than it is told: an
# answer to a request whose body was announced but not sent came at the headers.
cat >"$TEST_TMP/raw.py" <<'PY'
import socket, sys
port, seconds, src, body_bytes = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
head = sys.stdin.buffer.read().replace(b"\n", b"\r\n")
s = socket.socket()
s.bind((src, 0))
s.settimeout(seconds)
s.connect(("127.0.0.1", port))
try:
    s.sendall(head + b"x" * body_bytes)
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "none")
except socket.timeout:
    print("timeout")
except OSError:
    print("none")
PY
raw() { python3 "$TEST_TMP/raw.py" "$@"; } # PORT SECONDS SRC BODY_BYTES < HEAD
# announce PORT PATH TOKEN CONTENT_TYPE LENGTH : POST headers announcing LENGTH
# bytes (TOKEN empty: no Authorization) and none of the body; prints the status
announce() {
  printf 'POST %s HTTP/1.1\nHost: 127.0.0.1:%s\n%bContent-Type: %s\nContent-Length: %s\n\n' \
    "$2" "$1" "${3:+Authorization: Bearer $3\n}" "$4" "$5" | raw "$1" 3 127.0.0.1 0
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
daemons=() # the ferry serve instances started, stopped and checked at the end

# ---------------------------------------------------------------- instances

# guarded: webhook and API tokens, every limit at its default.
guarded_port=""
start_guarded() {
  [[ -z "$guarded_port" ]] || return 0
  guarded_port=$(free_port)
  config "$TEST_TMP/guarded.yaml" "$guarded_port" "webhook_token_env: HOOK_TOKEN" "api_token_env: API_TOKEN"
  ferry_serve_start guarded "$TEST_TMP/guarded.yaml" "$guarded_port"
  daemons+=(guarded)
}

# open: no token at all (the Host check applies everywhere).
open_port=""
start_open() {
  [[ -z "$open_port" ]] || return 0
  open_port=$(free_port)
  config "$TEST_TMP/open.yaml" "$open_port"
  ferry_serve_start open "$TEST_TMP/open.yaml" "$open_port"
  daemons+=(open)
}

# --------------------------------------------------------------- sections

if want token; then
  start_guarded
  p=$guarded_port
  got=$(announce "$p" /v1/events/src "$HOOK_TOKEN-wrong" "$EVENTS_CT" 1048576)
  assert_eq "$got" 401 "a wrong webhook token, 1 MiB announced and none sent"
  got=$(announce "$p" /v1/events/src "" "$EVENTS_CT" 1048576)
  assert_eq "$got" 401 "no webhook token, 1 MiB announced and none sent"
  got=$(announce "$p" /v1/retry "$API_TOKEN-wrong" "application/json" 1048576)
  assert_eq "$got" 401 "a wrong API token, 1 MiB announced and none sent"
  # A body over webhook_max_body with the right token: 413, also before it is sent.
  got=$(announce "$p" /v1/events/src "$HOOK_TOKEN" "$EVENTS_CT" 1048577)
  assert_eq "$got" 413 "a body over the cap, announced and not sent"
  # curl, asking for 100 Continue before its body, is told 401 instead, at once.
  t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 -H "Authorization: Bearer nope" \
    -H 'Expect: 100-continue' -H "Content-Type: application/json" --data-binary "@$TEST_TMP/mib" \
    "http://127.0.0.1:$p/v1/events/src")
  assert_eq "${t% *}" 401 "curl with a 1 MiB body and a wrong token"
  awk -v t="${t#* }" 'BEGIN { exit !(t < 0.9) }' || fail "the 401 took ${t#* } s: curl waited out its 100 Continue"
  pass "tokens are checked at the headers: 401 (and 413 over the cap) before any body byte is read"
fi

if want flood; then
  start_guarded
  p=$guarded_port
  cat >"$TEST_TMP/flood.py" <<'PY'
# Opens N connections spread over the given source addresses; each sends the
# head of a webhook POST announcing 1 MiB and then all but the last byte of
# it, as fast as the server takes it. Writes a summary to OUT once every
# connection has sent what it will (or ended), then holds them until killed.
import json, os, selectors, socket, sys, time
port, token, n, srcs, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5]
size = 1 << 20
head = ("POST /v1/events/src HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
        "Content-Type: application/vnd.docker.distribution.events.v1+json\r\n"
        "Content-Length: %d\r\n\r\n" % (port, token, size)).encode()
payload = memoryview(head + b" " * (size - 1))
sel = selectors.DefaultSelector()
conns = {}
for i in range(n):
    s = socket.socket()
    s.bind((srcs[i % len(srcs)], 0))
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    conns[s] = 0
    sel.register(s, selectors.EVENT_WRITE)
held, ended, answered = [], 0, {}
t0 = time.time()
while conns and time.time() - t0 < 60:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        try:
            sent = s.send(payload[conns[s]:conns[s] + 262144])
        except OSError:
            sent = -1
        if sent > 0:
            conns[s] += sent
            if conns[s] < len(payload):
                continue
            held.append(s)
        else:
            # Refused: read the answer if it is still there.
            try:
                s.setblocking(True)
                s.settimeout(0.2)
                status = s.recv(64).split(b" ")[1].decode()
            except (OSError, IndexError):
                status = "none"
            answered[status] = answered.get(status, 0) + 1
            ended += 1
            s.close()
        sel.unregister(s)
        del conns[s]
# Bodies the kernel took in whole may still have been refused: the answer says.
time.sleep(1)
for s in list(held):
    s.setblocking(False)
    try:
        data = s.recv(64)
    except BlockingIOError:
        continue
    except OSError:
        data = b""
    status = data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "none"
    answered[status] = answered.get(status, 0) + 1
    ended += 1
    held.remove(s)
    s.close()
with open(out + ".tmp", "w") as f:
    json.dump({"held": len(held), "ended": ended, "answers": answered, "unsettled": len(conns),
               "seconds": round(time.time() - t0, 2)}, f)
os.rename(out + ".tmp", out)
while True:
    time.sleep(3600)
PY
  pid=$guarded_PID
  rss0=$(rss_kb "$pid")
  start_bg flood python3 "$TEST_TMP/flood.py" "$p" "$HOOK_TOKEN" 300 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6 "$TEST_TMP/flood.json"
  # The largest RSS seen from the start of the flood until it settled, and 2 s on.
  peak=$rss0
  settled_at=0
  deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    r=$(rss_kb "$pid")
    ((r > peak)) && peak=$r
    if [[ -s "$TEST_TMP/flood.json" ]]; then
      ((settled_at)) || settled_at=$(_itest_now_ms)
      (($(_itest_now_ms) - settled_at >= 2000)) && break
    fi
    kill -0 "$flood_PID" 2>/dev/null || fail "the flood client died: $(cat "$TEST_TMP/flood.log")"
    sleep 0.05
  done
  [[ -s "$TEST_TMP/flood.json" ]] || fail "the flood did not settle in 60 s (peak RSS $((peak / 1024)) MiB)"
  note "flood: $(cat "$TEST_TMP/flood.json"); RSS $((rss0 / 1024)) MiB before, $((peak / 1024)) MiB at most"
  worst=0
  for i in 1 2 3 4 5; do
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 1 "http://127.0.0.1:$p/healthz" || true)
    assert_eq "${out% *}" 200 "/healthz during the flood (try $i)"
    worst=$(awk -v a="$worst" -v b="${out#* }" 'BEGIN { print (b > a ? b : a) }')
  done
  held=$(jq .held "$TEST_TMP/flood.json")
  ((held <= 64)) || fail "$held bodies of 1 MiB were taken in: over the 64 MiB budget"
  # The budget (64 MiB) and libmicrohttpd's 64 KiB per connection, with room;
  # AddressSanitizer keeps what is freed in quarantine, so twice that there.
  limit=120
  if [[ "$(ldd "$FERRY" 2>/dev/null)" == *libasan* ]]; then limit=240; fi
  (((peak - rss0) / 1024 < limit)) ||
    fail "ferry's RSS grew by $(((peak - rss0) / 1024)) MiB under the flood (from $((rss0 / 1024)) MiB); want under $limit"
  stop_bg flood
  pass "300 slow 1 MiB bodies: $held held, the rest refused; RSS +$(((peak - rss0) / 1024)) MiB; /healthz within ${worst} s"
fi

if want budget; then
  port=$(free_port)
  config "$TEST_TMP/budget.yaml" "$port" "webhook_token_env: HOOK_TOKEN" "request_body_budget: 2MiB"
  ferry_serve_start budget "$TEST_TMP/budget.yaml" "$port"
  daemons+=(budget)
  cat >"$TEST_TMP/hold.py" <<'PY'
# Holds K webhook POSTs of 1 MiB with all but the last byte sent, each once
# ferry let it in (100 Continue: its place in the budget is taken); on
# SIGUSR1 sends the last bytes and prints their statuses; then exits.
import signal, socket, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
port, token, k = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
head = ("POST /v1/events/src HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
        "Content-Type: application/json\r\nExpect: 100-continue\r\n"
        "Content-Length: %d\r\n\r\n" % (port, token, 1 << 20)).encode()
socks = []
for _ in range(k):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(head)
    answer = s.recv(64)
    if not answer.startswith(b"HTTP/1.1 100"):
        sys.exit("not let in: %r" % answer)
    s.sendall(b" " * ((1 << 20) - 1))
    socks.append(s)
print("holding", flush=True)
signal.sigwait([signal.SIGUSR1])
for s in socks:
    s.settimeout(5)
    s.sendall(b" ")
    print(s.recv(64).split(b" ")[1].decode(), flush=True)
PY
  start_bg hold python3 "$TEST_TMP/hold.py" "$port" "$HOOK_TOKEN" 2
  wait_until 10 grep -q holding "$TEST_TMP/hold.log" || fail "the two bodies were not sent: $(cat "$TEST_TMP/hold.log")"
  resp=$(printf 'POST /v1/events/src HTTP/1.1\nHost: 127.0.0.1:%s\nAuthorization: Bearer %s\nContent-Type: application/json\nContent-Length: 1048576\n\n' \
    "$port" "$HOOK_TOKEN" | raw "$port" 3 127.0.0.1 0)
  assert_eq "$resp" 503 "a third 1 MiB body while two are held"
  hdrs=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $HOOK_TOKEN" -H 'Content-Type: application/json' \
    --data-binary "@$TEST_TMP/mib" -H 'Expect: 100-continue' "http://127.0.0.1:$port/v1/events/src" | tr -d '\r' || true)
  grep -q '^HTTP/1.1 503' <<<"$hdrs" || fail "no 503 for curl's body: $hdrs"
  grep -qi '^Retry-After: [0-9]' <<<"$hdrs" || fail "the 503 has no Retry-After: $hdrs"
  kill -USR1 "$hold_PID"
  wait_until 10 bash -c "[ \$(grep -c '^400$' '$TEST_TMP/hold.log') -eq 2 ]" ||
    fail "the held bodies were not answered (400: spaces are no JSON): $(cat "$TEST_TMP/hold.log")"
  event_body budget-1 >"$TEST_TMP/ok.json"
  # (The budget is given back as each answer leaves: a moment after the client has it.)
  post_ok() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $HOOK_TOKEN" -H "Content-Type: application/json" \
      --data-binary "@$TEST_TMP/ok.json" "http://127.0.0.1:$port/v1/events/src")" == 200 ]]
  }
  wait_until 5 post_ok || fail "no 200 for a body once the budget is free again"
  pass "request_body_budget: over it, 503 with Retry-After before the body is read; freed as bodies are done"
fi

if want perip; then
  start_guarded
  p=$guarded_port
  cat >"$TEST_TMP/perip.py" <<'PY'
# From one address: open HOLD connections, each answered one GET /healthz
# and kept alive (so every one is in ferry's count), then EXTRA more with a
# whole GET /healthz; print how many of those got an answer. Then close the
# HOLD ones and print the status a new one gets.
import socket, sys, time
port, src, hold, extra = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def conn():
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    return s
def get(s):
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "none"
    except (OSError, IndexError):
        return "none"
held = []
for i in range(hold):
    s = conn()
    status = get(s)
    if status != "200":
        sys.exit("connection %d of %d answered %s" % (i + 1, hold, status))
    held.append(s)
answers = [get(conn()) for _ in range(extra)]
print("extra", sum(a == "200" for a in answers))
for s in held:
    s.close()
# ferry sees the closes on its next turn: a new connection is taken by then.
deadline = time.time() + 5
after = get(conn())
while after != "200" and time.time() < deadline:
    time.sleep(0.1)
    after = get(conn())
print("after", after)
PY
  python3 "$TEST_TMP/perip.py" "$p" 127.0.0.9 64 4 >"$TEST_TMP/perip.out" 2>&1 || fail "perip client: $(cat "$TEST_TMP/perip.out")"
  assert_eq "$(awk '$1 == "extra" { print $2 }' "$TEST_TMP/perip.out")" 0 "connections past 64 from one address answered"
  assert_eq "$(awk '$1 == "after" { print $2 }' "$TEST_TMP/perip.out")" 200 "a connection once the 64 closed"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$p/healthz")" 200 \
    "another address meanwhile"
  pass "64 connections per address: the 65th is closed unanswered, and taken again once they close"
fi

if want types; then
  start_open
  p=$open_port
  J() { "$FERRY" journal -c "$TEST_TMP/open.yaml" ls --json | grep -c '"types-' || true; }
  before=$(J)
  event_body types-0 >"$TEST_TMP/ev.json"
  for ct in "text/plain" "text/plain;charset=UTF-8" "application/x-www-form-urlencoded" \
    "multipart/form-data; boundary=x" "application/jsonx" "text/json+xml" ""; do
    code=$(curl -s -o "$TEST_TMP/resp" -w '%{http_code}' -H "Content-Type: $ct" \
      --data-binary "@$TEST_TMP/ev.json" "http://127.0.0.1:$p/v1/events/src")
    assert_eq "$code" 415 "webhook with Content-Type '$ct'"
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' -d '{"destination":"dst"}' \
    "http://127.0.0.1:$p/v1/retry")
  assert_eq "$code" 415 "/v1/retry as text/plain"
  assert_eq "$(J)" "$before" "nothing journaled by the refused posts"
  n=0
  for ct in "application/json; charset=utf-8" "$EVENTS_CT" "Application/JSON"; do
    n=$((n + 1))
    event_body "types-$n" "$ct" >"$TEST_TMP/ev.json"
    code=$(curl -s -o "$TEST_TMP/resp" -w '%{http_code}' -H "Content-Type: $ct" \
      --data-binary "@$TEST_TMP/ev.json" "http://127.0.0.1:$p/v1/events/src")
    assert_eq "$code" 200 "webhook with Content-Type '$ct': $(cat "$TEST_TMP/resp")"
  done
  pass "a webhook or retry POST that is not JSON (a browser's form or text/plain) is 415 and journals nothing"
fi

if want host; then
  start_open
  p=$open_port
  host_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H "Host: $1" "${@:3}" "http://127.0.0.1:$p$2"; }
  event_body host-1 >"$TEST_TMP/ev.json"
  for path in /v1/status /metrics / /app.js /healthz; do
    assert_eq "$(host_code evil.example.com "$path")" 421 "Host evil.example.com on $path"
    assert_eq "$(host_code "evil.example.com:$p" "$path")" 421 "Host evil.example.com:$p on $path"
  done
  assert_eq "$(host_code evil.example.com /v1/events/src -H 'Content-Type: application/json' --data-binary "@$TEST_TMP/ev.json")" 421 \
    "the webhook without a token, Host evil.example.com"
  assert_eq "$(host_code "127.0.0.1:$((p == 65535 ? 1 : p + 1))" /v1/status)" 421 "the listen address with another port"
  assert_eq "$(host_code ferry.example.com /v1/status)" 421 "a name server_names does not list yet"
  for h in "127.0.0.1:$p" "localhost:$p" "LOCALHOST:$p" "127.0.0.2:$p"; do
    assert_eq "$(host_code "$h" /v1/status)" 200 "Host $h"
  done
  no_host=$(printf 'GET /v1/status HTTP/1.0\n\n' | raw "$p" 3 127.0.0.1 0)
  assert_eq "$no_host" 421 "HTTP/1.0 without a Host"
  # server_names is read again at a reload.
  config "$TEST_TMP/open.yaml" "$p" "server_names: [ferry.example.com, \"[fd00::1]\"]"
  kill -HUP "$open_PID"
  wait_until 10 grep -q 'reloaded config' "$TEST_TMP/open.log" || fail "no reload: $(tail -3 "$TEST_TMP/open.log")"
  for h in ferry.example.com FERRY.example.com:8443 ferry.example.com. "[fd00::1]:$p"; do
    assert_eq "$(host_code "$h" /v1/status)" 200 "Host $h once in server_names"
  done
  assert_eq "$(host_code evil.example.com /v1/status)" 421 "Host evil.example.com after the reload"
  start_guarded
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: evil.example.com' -H "Authorization: Bearer $API_TOKEN" \
    "http://127.0.0.1:$guarded_port/v1/status")" 200 "with api_token, any Host with the token"
  pass "without api_token, a Host that does not name the listener is 421 (DNS rebinding); server_names and loopback names pass"
fi

if want frame; then
  start_open
  for path in / /app.js /v1/status /healthz /nowhere; do
    curl -s -D "$TEST_TMP/h" -o /dev/null "http://127.0.0.1:$open_port$path"
    tr -d '\r' <"$TEST_TMP/h" >"$TEST_TMP/h2"
    grep -qx 'X-Frame-Options: DENY' "$TEST_TMP/h2" || fail "$path has no X-Frame-Options: DENY: $(cat "$TEST_TMP/h2")"
    grep -qE "^Content-Security-Policy: .*frame-ancestors 'none'" "$TEST_TMP/h2" ||
      fail "$path has no frame-ancestors 'none': $(cat "$TEST_TMP/h2")"
  done
  grep -qE "^Content-Security-Policy: default-src 'self'; script-src 'self';" "$TEST_TMP/h2" ||
    fail "the policy is not the dashboard's: $(grep -i policy "$TEST_TMP/h2")"
  pass "every answer carries X-Frame-Options: DENY and frame-ancestors 'none'"
fi

if want metrics; then
  port=$(free_port)
  config "$TEST_TMP/metrics.yaml" "$port" "api_token_env: API_TOKEN" "metrics_token_env: METRICS_TOKEN"
  ferry_serve_start metrics "$TEST_TMP/metrics.yaml" "$port"
  daemons+=(metrics)
  m() { curl -s -o /dev/null -w '%{http_code}' ${2:+-H "Authorization: Bearer $2"} "${@:3}" "http://127.0.0.1:$port$1"; }
  assert_eq "$(m /metrics "$METRICS_TOKEN")" 200 "/metrics with the metrics token"
  assert_eq "$(m /metrics "$API_TOKEN")" 200 "/metrics with the API token"
  assert_eq "$(m /metrics "")" 401 "/metrics without a token"
  assert_eq "$(m /metrics "$METRICS_TOKEN-x")" 401 "/metrics with a wrong token"
  assert_eq "$(m /v1/status "$METRICS_TOKEN")" 401 "/v1/status with the metrics token"
  assert_eq "$(m /v1/failures "$METRICS_TOKEN")" 401 "/v1/failures with the metrics token"
  assert_eq "$(m /v1/retry "$METRICS_TOKEN" -H 'Content-Type: application/json' -d '{"destination":"dst"}')" 401 \
    "/v1/retry with the metrics token"
  assert_eq "$(m /v1/status "$API_TOKEN")" 200 "/v1/status with the API token"
  curl -s -H "Authorization: Bearer $METRICS_TOKEN" "http://127.0.0.1:$port/metrics" | grep -q '^ferry_journal_last_seq ' ||
    fail "/metrics does not read as metrics"
  for s in "$API_TOKEN" "$METRICS_TOKEN" "$HOOK_TOKEN"; do
    if grep -qF -- "$s" "$TEST_TMP"/*.log; then fail "a token (${s%%-*}) reached a log"; fi
  done
  pass "metrics_token opens /metrics and nothing else; the api_token opens /metrics too"
fi

if want warn; then
  check() { # NAME LISTEN LINE... : how many "listening on" warnings --check-config prints
    config "$TEST_TMP/$1.yaml" "$2" "${@:3}"
    "$FERRY" serve --check-config -c "$TEST_TMP/$1.yaml" 2>"$TEST_TMP/$1.err" || fail "$1 refused: $(cat "$TEST_TMP/$1.err")"
    grep -c 'listening on ' "$TEST_TMP/$1.err" || true
  }
  assert_eq "$(check wide 0.0.0.0:8780)" 1 "one warning on 0.0.0.0 without tokens"
  grep -q 'listening on 0.0.0.0:8780 without api_token or webhook_token: the API (retry included), /metrics and the webhook (anyone may journal events) are open to the network' \
    "$TEST_TMP/wide.err" || fail "the warning does not name what is open: $(cat "$TEST_TMP/wide.err")"
  assert_eq "$(check wide6 "[::]:8780" 'webhook_token_env: HOOK_TOKEN')" 1 "one warning on [::] without api_token"
  grep -q 'without api_token: the API (retry included) and /metrics are open' "$TEST_TMP/wide6.err" ||
    fail "the warning: $(cat "$TEST_TMP/wide6.err")"
  assert_eq "$(check widem 0.0.0.0:8780 'api_token_env: API_TOKEN')" 1 "a warning on 0.0.0.0 without webhook_token"
  grep -q 'without webhook_token: the webhook (anyone may journal events) is open' "$TEST_TMP/widem.err" ||
    fail "the warning: $(cat "$TEST_TMP/widem.err")"
  assert_eq "$(check closed 0.0.0.0:8780 'api_token_env: API_TOKEN' 'webhook_token_env: HOOK_TOKEN')" 0 "no warning with both tokens"
  assert_eq "$(check local 8780)" 0 "no warning on loopback"
  pass "a listen address beyond loopback without tokens gets one warning naming what is open"
fi

if want config; then
  refused() { # NAME EXPECTED LINE... : --check-config refuses such a config, saying EXPECTED
    config "$TEST_TMP/$1.yaml" 8780 "${@:3}"
    if "$FERRY" serve --check-config -c "$TEST_TMP/$1.yaml" 2>"$TEST_TMP/$1.err"; then fail "$1: accepted"; fi
    grep -qF -- "$2" "$TEST_TMP/$1.err" || fail "$1: $(cat "$TEST_TMP/$1.err")"
  }
  refused mt2 "metrics_token, metrics_token_env and metrics_token_file are exclusive" \
    "metrics_token: abc" "metrics_token_env: METRICS_TOKEN"
  unset FERRY_LISTENER_UNSET
  refused mtenv "metrics_token_env: FERRY_LISTENER_UNSET is not set" "metrics_token_env: FERRY_LISTENER_UNSET"
  refused budget "request_body_budget: must be at least webhook_max_body (4194304 bytes)" \
    "webhook_max_body: 4MiB" "request_body_budget: 2MiB"
  refused names "server_names[0]: 'ferry.example.com:443' is not a host name" "server_names: [ferry.example.com:443]"
  refused perip "max_connections_per_ip: must be between 1 and 1024" "max_connections_per_ip: 0"
  pass "metrics_token, request_body_budget, server_names and max_connections_per_ip are checked like every key"
fi

if want tls; then
  pki=$TEST_TMP/tls
  mkdir -p "$pki"
  for n in a b; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$pki/$n.key" -out "$pki/$n.pem" >"$pki/openssl.log" 2>&1 || fail "openssl: $(cat "$pki/openssl.log")"
  done
  chmod 600 "$pki"/*.key
  port=$(free_port)
  config "$TEST_TMP/tls.yaml" "$port" "api_token_env: API_TOKEN" "tls: { cert_file: $pki/a.pem, key_file: $pki/a.key }"
  start_bg tls "$FERRY" serve -c "$TEST_TMP/tls.yaml"
  wait_until 15 curl -sf -o /dev/null --cacert "$pki/a.pem" "https://127.0.0.1:$port/healthz" ||
    fail "no HTTPS on $port: $(tail -3 "$TEST_TMP/tls.log")"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/a.pem" -H "Authorization: Bearer $API_TOKEN" \
    "https://127.0.0.1:$port/v1/status")" 200 "/v1/status over TLS"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/b.pem" "https://127.0.0.1:$port/healthz")" 000 \
    "another certificate's CA is refused by the client"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$port/healthz")" 000 "plain HTTP on the TLS port"
  grep -q "serving on 127.0.0.1:$port port $port with TLS" "$TEST_TMP/tls.log" || fail "the start line does not say TLS"
  stop_bg tls
  # Bad files: one line naming the key, and no listener.
  echo "not a certificate" >"$pki/bad.pem"
  bad() { # NAME TLS_LINE EXPECTED_KEY
    config "$TEST_TMP/$1.yaml" "$port" "$2"
    local rc=0
    timeout 10 "$FERRY" serve -c "$TEST_TMP/$1.yaml" >"$TEST_TMP/$1.out" 2>&1 || rc=$?
    assert_eq "$rc" 2 "$1: ferry serve's exit status (a config error)"
    assert_eq "$(wc -l <"$TEST_TMP/$1.out")" 1 "$1: one line ($(cat "$TEST_TMP/$1.out"))"
    grep -q "$3" "$TEST_TMP/$1.out" || fail "$1: the error does not name $3: $(cat "$TEST_TMP/$1.out")"
  }
  bad badcert "tls: { cert_file: $pki/bad.pem, key_file: $pki/a.key }" "tls.cert_file: $pki/bad.pem holds no PEM certificate"
  bad otherkey "tls: { cert_file: $pki/a.pem, key_file: $pki/b.key }" "tls.key_file: $pki/b.key is not the key of $pki/a.pem"
  bad nokey "tls: { cert_file: $pki/a.pem, key_file: $pki/none.key }" "tls.key_file: cannot read $pki/none.key"
  bad halftls "tls: { cert_file: $pki/a.pem }" "missing 'key_file'"
  # A key others can read is warned about.
  chmod 644 "$pki/a.key"
  config "$TEST_TMP/tls.yaml" "$port" "tls: { cert_file: $pki/a.pem, key_file: $pki/a.key }"
  "$FERRY" serve --check-config -c "$TEST_TMP/tls.yaml" 2>"$TEST_TMP/tlscheck.err" || fail "$(cat "$TEST_TMP/tlscheck.err")"
  grep -q "readable by group or others.*$pki/a.key" "$TEST_TMP/tlscheck.err" || fail "no warning for a readable key: $(cat "$TEST_TMP/tlscheck.err")"
  if grep -q 'PRIVATE KEY' "$TEST_TMP"/*.out "$TEST_TMP"/*.err "$TEST_TMP"/*.log; then fail "the key was printed"; fi
  pass "tls: HTTPS with the configured certificate; bad, mismatched or missing files are one-line config errors"
fi

# Every daemon stops cleanly (under the sanitizer build: no leak, no error reported).
for name in "${daemons[@]}"; do
  stop_bg "$name"
done
if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error' "$TEST_TMP"/*.log "$TEST_TMP"/*.err "$TEST_TMP"/*.out 2>/dev/null; then
  fail "the sanitizers complained: $(grep -hm3 -E 'AddressSanitizer|LeakSanitizer|runtime error' "$TEST_TMP"/*.log "$TEST_TMP"/*.err "$TEST_TMP"/*.out)"
fi
