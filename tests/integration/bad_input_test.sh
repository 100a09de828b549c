#!/usr/bin/env bash
# Bad input, from the user and from registries, gets one clear line of error
# and nothing half-written:
#  - ferry copy with invalid repository names (path traversal, uppercase, too
#    long) and invalid digests on either side: refused before any request;
#  - registries that misbehave (a tiny python fake on 127.0.0.1): a token
#    endpoint answering garbage, HTML where the API should be, a manifest over
#    4 MiB, an index whose child is the index again: the copy fails naming the
#    problem, and the destination (a real Distribution registry) gets no
#    manifest and no tag;
#  - ferry sync with a config that names invalid repositories: refused with
#    FILE:LINE, the data_dir's journal untouched; ferry sync from the
#    misbehaving registries: the job FAILED with the reason, nothing pushed.
# Every failure exits nonzero and below 128 (no crash), and its line is the
# one expected for that case, word for word (not any line with a keyword).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --layers 1 --layer-size 1K --compact >"$TEST_TMP/app.json"

# ------------------------------------------------------------ the fake registry
# One process per behaviour, each on a port of its own (written to a file once
# it listens). /v2/_catalog and tags/list answer sanely so that ferry sync
# reaches the manifest; what happens next depends on MODE.
cat >"$TEST_TMP/fake_registry.py" <<'PY'
import hashlib, http.server, json, sys

mode, port_file = sys.argv[1], sys.argv[2]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HTML = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
        b"<body><h1>Welcome to the corporate proxy</h1><p>Please log in.</p></body></html>\n")
def digest(body):
    return "sha256:" + hashlib.sha256(body).hexdigest()

# An index whose only child is a digest this server answers with the index again.
CHILD = digest(b"the child")
INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_INDEX, "digest": CHILD, "size": 200}]}).encode()
# A valid manifest, padded past 4 MiB with an annotation.
BIG = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + "0" * 64, "size": 2},
    "layers": [], "annotations": {"pad": "x" * (5 * 1024 * 1024)}}).encode()

# A small valid manifest whose blobs this server does not have.
SMALL = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": digest(b"{}"), "size": 2},
    "layers": []}).encode()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, self.path))

    def send(self, status, body, ctype, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def listing(self):
        path = self.path.split("?")[0]
        if path == "/v2/_catalog":
            self.send(200, b'{"repositories":["app"]}', "application/json")
        elif path == "/v2/app/tags/list":
            self.send(200, b'{"name":"app","tags":["v1"]}', "application/json")
        else:
            return False
        return True

    def do_GET(self):
        host = "127.0.0.1:%d" % self.server.server_address[1]
        if mode == "html":
            # A proxy's login page, 200 OK, for every request.
            self.send(200, HTML, "text/html; charset=utf-8")
        elif mode == "html-502" and self.path != "/v2/":
            # A reverse proxy whose backend is down.
            self.send(502, HTML, "text/html")
        elif mode == "token-garbage":
            if self.path.startswith("/token"):
                self.send(200, b"\x00\xffthis is not a token\n" * 50, "application/json")
            else:
                self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                          "application/json",
                          [("WWW-Authenticate",
                            'Bearer realm="http://%s/token",service="fake",scope="repository:app:pull"' % host)])
        elif self.path == "/v2/" or self.listing():
            if self.path == "/v2/":
                self.send(200, b"{}", "application/json")
        elif mode == "big-manifest" and "/manifests/" in self.path:
            self.send(200, BIG, OCI_MANIFEST, [("Docker-Content-Digest", digest(BIG))])
        elif mode == "no-dcd" and "/manifests/" in self.path and "/manifests/sha256-" not in self.path:
            # A manifest answered without Docker-Content-Digest (HEAD and GET alike).
            self.send(200, SMALL, OCI_MANIFEST)
        elif mode == "self-index" and "/manifests/" in self.path:
            self.send(200, INDEX, OCI_INDEX, [("Docker-Content-Digest", digest(INDEX))])
        else:
            self.send(404, b'{"errors":[{"code":"NOT_FOUND","message":"not here"}]}', "application/json")

    do_HEAD = do_GET

if mode == "digests":
    # What the expected error lines name.
    print(json.dumps({"html": digest(HTML), "child": CHILD, "index": digest(INDEX),
                      "big": digest(BIG), "small": digest(SMALL)}))
    sys.exit(0)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
PY

# fake_start NAME MODE : start the fake as background process NAME; sets NAME_ADDR.
fake_start() {
  local name=$1 mode=$2 port_file="$TEST_TMP/$1.port"
  start_bg "$name" python3 "$TEST_TMP/fake_registry.py" "$mode" "$port_file"
  wait_until 10 test -s "$port_file" || fail "fake registry $name ($mode) did not start"
  declare -g "${name}_ADDR=127.0.0.1:$(cat "$port_file")"
}

python3 "$TEST_TMP/fake_registry.py" digests - >"$TEST_TMP/fake_digests.json"
html_digest=$(jq -r .html "$TEST_TMP/fake_digests.json")
child_digest=$(jq -r .child "$TEST_TMP/fake_digests.json")
index_digest=$(jq -r .index "$TEST_TMP/fake_digests.json")
big_digest=$(jq -r .big "$TEST_TMP/fake_digests.json")
fake_start html html
fake_start proxy html-502
fake_start tokens token-garbage
fake_start big big-manifest
fake_start selfidx self-index
fake_start nodcd no-dcd

# ---------------------------------------------------------------- assertions
# A line that is not the expected one is collected (the test fails at its
# end, listing them all), so that one wrong message hides no other case.
wrong_lines=()
# line_is NAME ACTUAL EXPECTED
line_is() {
  [[ "$2" == "$3" ]] || wrong_lines+=("$1: got:  $2" "$1: want: $3")
}

# expect_failure NAME EXIT LINE CMD... : CMD exits EXIT (nonzero, below 128)
# and writes exactly one line to stderr: LINE.
expect_failure() {
  local name=$1 want_rc=$2 line=$3 rc=0
  shift 3
  "$@" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || rc=$?
  ((rc != 0)) || fail "$name: exited 0"
  ((rc < 128)) || fail "$name: killed by a signal (exit $rc): $(cat "$TEST_TMP/$name.err")"
  assert_eq "$rc" "$want_rc" "$name: exit status ($(head -c 600 "$TEST_TMP/$name.err"))"
  assert_eq "$(wc -l <"$TEST_TMP/$name.err")" 1 "$name: lines of error ($(head -c 600 "$TEST_TMP/$name.err"))"
  line_is "$name" "$(cat "$TEST_TMP/$name.err")" "$line"
  note "$name (exit $rc): $(cat "$TEST_TMP/$name.err")"
}

# ref_error SIDE REF REASON : ferry copy's line for an invalid reference.
ref_error() {
  printf 'ferry copy: %s %s: invalid image reference "%s": %s' "$1" "$2" "$2" "$3"
}

# dst_untouched WHAT : the destination registry got no write of any kind and
# holds no repository.
dst_untouched() {
  assert_eq "$(registry_count_requests dst 'PUT|POST|PATCH|DELETE' '.*')" 0 "$1: writes to dst"
  assert_eq "$(curl -s "$dst_URL/v2/_catalog" | jq -c '.repositories')" "[]" "$1: repositories at dst"
}

copy() {
  "$FERRY" copy --no-cache --retries 2 "$@"
}

# ------------------------------------------------- invalid references (copy)
long=$(printf 'a%.0s' $(seq 1 260))
dotdot="repository must not contain '..'"
lower="repository must be lowercase"
toolong="repository is longer than 255 bytes"
baddigest="digest must be sha256: followed by 64 lowercase hex digits"
upper64=$(printf 'A%.0s' $(seq 1 64))
expect_failure traversal-src 1 "$(ref_error source "$src_ADDR/../etc/passwd:v1" "$dotdot")" \
  copy "$src_ADDR/../etc/passwd:v1" "$dst_ADDR/app:v1"
expect_failure traversal-dst 1 "$(ref_error destination "$dst_ADDR/app/../../etc:v1" "$dotdot")" \
  copy "$src_ADDR/app:v1" "$dst_ADDR/app/../../etc:v1"
expect_failure dot-dot-component 1 "$(ref_error destination "$dst_ADDR/a/../b:v1" "$dotdot")" \
  copy "$src_ADDR/app:v1" "$dst_ADDR/a/../b:v1"
expect_failure uppercase-src 1 "$(ref_error source "$src_ADDR/App:v1" "$lower")" copy "$src_ADDR/App:v1" "$dst_ADDR/app:v1"
expect_failure uppercase-dst 1 "$(ref_error destination "$dst_ADDR/Team/App:v1" "$lower")" \
  copy "$src_ADDR/app:v1" "$dst_ADDR/Team/App:v1"
expect_failure too-long 1 "$(ref_error source "$src_ADDR/$long:v1" "$toolong")" copy "$src_ADDR/$long:v1" "$dst_ADDR/app:v1"
expect_failure too-long-dst 1 "$(ref_error destination "$dst_ADDR/$long:v1" "$toolong")" \
  copy "$src_ADDR/app:v1" "$dst_ADDR/$long:v1"
expect_failure bad-digest 1 "$(ref_error source "$src_ADDR/app@sha256:abc" "$baddigest")" \
  copy "$src_ADDR/app@sha256:abc" "$dst_ADDR/app:v1"
expect_failure bad-digest-upper 1 "$(ref_error source "$src_ADDR/app@sha256:$upper64" "$baddigest")" \
  copy "$src_ADDR/app@sha256:$upper64" "$dst_ADDR/app:v1"
expect_failure bad-digest-algo 1 "$(ref_error source "$src_ADDR/app@md5:d41d8cd98f00b204e9800998ecf8427e" "$baddigest")" \
  copy "$src_ADDR/app@md5:d41d8cd98f00b204e9800998ecf8427e" "$dst_ADDR/app:v1"
expect_failure bad-tag 1 "$(ref_error source "$src_ADDR/app:-v1" "tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}")" \
  copy "$src_ADDR/app:-v1" "$dst_ADDR/app:v1"
assert_eq "$(registry_count_requests src '.*' '.*' '' 'ferry/.*')" 0 "invalid references: no request to src"
assert_eq "$(registry_count_requests dst '.*' '.*' '' 'ferry/.*')" 0 "invalid references: no request to dst"
dst_untouched "invalid references"
pass "invalid repository names, tags and digests are refused before any request"

# ------------------------------------------------ misbehaving registries (copy)
expect_failure token-garbage 1 "ferry copy: GET $tokens_ADDR/v2/: token response is not a token (no \"token\" string in JSON)" copy "$tokens_ADDR/app:v1" "$dst_ADDR/app:v1"
dst_untouched "token endpoint answering garbage"
pass "a token endpoint answering garbage: one line, nothing written"

expect_failure html 1 "ferry copy: manifest $html_digest: manifest is not valid json" copy "$html_ADDR/app:v1" "$dst_ADDR/app:v1"
expect_failure html-502 1 "ferry copy: GET $proxy_ADDR/v2/app/manifests/v1: HTTP 502" copy "$proxy_ADDR/app:v1" "$dst_ADDR/app:v1"
if grep -qi '<html\|<body\|proxy' "$TEST_TMP/html.err" "$TEST_TMP/html-502.err"; then
  fail "the HTML reached the error line: $(cat "$TEST_TMP/html.err" "$TEST_TMP/html-502.err")"
fi
dst_untouched "registry answering HTML"
pass "a registry answering HTML (200 and 502): one line, no HTML in it, nothing written"

expect_failure big-manifest 1 "ferry copy: manifest $big_ADDR/app:v1 is over 4194304 bytes" copy "$big_ADDR/app:v1" "$dst_ADDR/app:v1"
dst_untouched "manifest over 4 MiB"
pass "a manifest over 4 MiB: refused, nothing written"

# The child is asked for by digest in repository app: the line names that
# reference (today it prints HOST/DIGEST, without the repository).
self_index_line="manifest $child_digest in $selfidx_ADDR/app@$child_digest does not match its digest (content is $index_digest)"
expect_failure self-index 1 "ferry copy: $self_index_line" copy "$selfidx_ADDR/app:v1" "$dst_ADDR/app:v1"
dst_untouched "index listing itself"
pass "an index whose child is itself: refused, nothing written"

# ---------------------------------------------------------- ferry sync: config
data="$TEST_TMP/data"
write_config() { # FILE SOURCE_URL [EXTRA_RULE_YAML] [DEST_TEMPLATE] [REGISTRY_EXTRA]
  local template=${4:-"{repo}"}
  cat >"$1" <<YAML
data_dir: $data
listen: 127.0.0.1:$(free_port)
poll_interval: 0
retry: { attempts: 1, base: 10ms, max: 10ms }
registries:
  src: { url: "$2"${5:+, $5} }
  dst: { url: "http://$dst_ADDR" }
rules:
  - name: all
    source: src
${3:-}    destinations:
      - { registry: dst, repository: "$template" }
YAML
}

# A first, good sync makes the journal that the rejected configs must leave alone.
write_config "$TEST_TMP/good.yaml" "http://$src_ADDR" '    repositories: ["nothing-matches"]
'
"$FERRY" sync -c "$TEST_TMP/good.yaml" >/dev/null 2>"$TEST_TMP/good.err" || fail "good sync failed: $(cat "$TEST_TMP/good.err")"
[[ -d "$data" ]] || fail "the good sync made no data_dir"
snapshot() { (cd "$data" && find . -type f -print0 | sort -z | xargs -0 sha256sum; find . | sort); }
snapshot >"$TEST_TMP/data.before"

write_config "$TEST_TMP/bad-poll-repo.yaml" "http://$src_ADDR" "" "" 'repositories: ["../etc/passwd"]'
expect_failure sync-traversal-repo 2 \
  "ferry sync: $TEST_TMP/bad-poll-repo.yaml:6: registries.src.repositories[0]: '../etc/passwd' is not a valid repository name" \
  "$FERRY" sync -c "$TEST_TMP/bad-poll-repo.yaml"
write_config "$TEST_TMP/bad-upper-repo.yaml" "http://$src_ADDR" "" "" 'repositories: [Team/App]'
expect_failure sync-uppercase-repo 2 \
  "ferry sync: $TEST_TMP/bad-upper-repo.yaml:6: registries.src.repositories[0]: 'Team/App' is not a valid repository name" "$FERRY" sync -c "$TEST_TMP/bad-upper-repo.yaml"
write_config "$TEST_TMP/bad-long-repo.yaml" "http://$src_ADDR" "" "" "repositories: [$long]"
expect_failure sync-long-repo 2 \
  "ferry sync: $TEST_TMP/bad-long-repo.yaml:6: registries.src.repositories[0]: '${long:0:80}' is not a valid repository name" "$FERRY" sync -c "$TEST_TMP/bad-long-repo.yaml"
write_config "$TEST_TMP/bad-template.yaml" "http://$src_ADDR" "" "../{repo}"
templ="does not make valid repository names (lowercase letters, digits, separators, '/')"
expect_failure sync-template-traversal 2 \
  "ferry sync: $TEST_TMP/bad-template.yaml:12: rules[0].destinations[0].repository: '../{repo}' $templ" "$FERRY" sync -c "$TEST_TMP/bad-template.yaml"
write_config "$TEST_TMP/bad-template-upper.yaml" "http://$src_ADDR" "" "Mirror/{repo}"
expect_failure sync-template-uppercase 2 \
  "ferry sync: $TEST_TMP/bad-template-upper.yaml:12: rules[0].destinations[0].repository: 'Mirror/{repo}' $templ" "$FERRY" sync -c "$TEST_TMP/bad-template-upper.yaml"
snapshot >"$TEST_TMP/data.after"
diff -u "$TEST_TMP/data.before" "$TEST_TMP/data.after" >&2 || fail "a rejected config changed the data_dir"
dst_untouched "rejected configs"
pass "configs with invalid repository names are refused with FILE:LINE; the journal is untouched"

# ------------------------------------------------ ferry sync: bad registries
# expect_sync_failed NAME REASON SOURCE_ADDR [SESSIONS_OK] : a sync from that
# source exits 1 (not a crash) and its summary (stdout) has exactly one FAILED
# line, `FAILED     REASON`; nothing reaches the destination.
expect_sync_failed() {
  local name=$1 reason=$2 addr=$3 sessions_ok=${4:-0} rc=0
  rm -rf "$data"
  write_config "$TEST_TMP/$name.yaml" "http://$addr"
  "$FERRY" sync -c "$TEST_TMP/$name.yaml" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || rc=$?
  ((rc != 0)) || fail "$name: sync exited 0: $(cat "$TEST_TMP/$name.err")"
  assert_eq "$rc" 1 "$name: sync exit status"
  ((rc < 128)) || fail "$name: sync killed by a signal (exit $rc): $(cat "$TEST_TMP/$name.err")"
  local failed
  # The summary, on stdout, names each failure once.
  failed=$(grep '^FAILED' "$TEST_TMP/$name.out" || true)
  assert_eq "$(grep -c . <<<"$failed")" 1 "$name: FAILED lines ($(cat "$TEST_TMP/$name.out" "$TEST_TMP/$name.err"))"
  line_is "$name" "$failed" "FAILED     $reason"
  note "$name (exit $rc): $failed"
  if ((sessions_ok)); then
    # The blob's upload session was opened before its download failed: no
    # PUT may have landed and no repository may show.
    assert_eq "$(registry_count_requests dst 'PUT' '.*' '2[0-9][0-9]')" 0 "$name: PUTs that landed at dst"
    assert_eq "$(curl -s "$dst_URL/v2/_catalog" | jq -c '.repositories')" "[]" "$name: repositories at dst"
  else
    dst_untouched "$name"
  fi
}
expect_sync_failed sync-token-garbage "polling: source src: $tokens_ADDR lists no repositories to Ferry; name them under \`repositories:\` of registry src in the config (GET $tokens_ADDR/v2/_catalog: token response is not a token (no \"token\" string in JSON))" "$tokens_ADDR"
expect_sync_failed sync-html "polling: src: GET $html_ADDR/v2/_catalog: response is not a JSON listing of repositories" "$html_ADDR"
expect_sync_failed sync-big-manifest "dst app@$big_digest tag v1: the source cannot give app@$big_digest: manifest $big_ADDR/app@$big_digest is over 4194304 bytes" "$big_ADDR"
expect_sync_failed sync-self-index "dst app@$index_digest tag v1: the source cannot give app@$index_digest: $self_index_line" "$selfidx_ADDR"
# A HEAD without Docker-Content-Digest is not a tag to skip: the poller GETs
# the manifest for its digest, and the job then fails on the missing blob.
small_digest=$(jq -r .small "$TEST_TMP/fake_digests.json")
config_digest=sha256:$(printf '{}' | sha256sum | cut -d' ' -f1)
expect_sync_failed sync-no-digest-header "dst app@$small_digest tag v1: the source cannot give app@$small_digest: GET $nodcd_ADDR/v2/app/blobs/$config_digest: HTTP 404 (NOT_FOUND: not here)" "$nodcd_ADDR" 1
pass "ferry sync from misbehaving registries: nothing written"

if ((${#wrong_lines[@]} > 0)); then
  printf '  %s\n' "${wrong_lines[@]}" >&2
  fail "$((${#wrong_lines[@]} / 2)) error lines are not the expected ones (above)"
fi
pass "every error is its expected line"
