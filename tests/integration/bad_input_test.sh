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
# Every failure exits nonzero and below 128 (no crash).
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

fake_start html html
fake_start proxy html-502
fake_start tokens token-garbage
fake_start big big-manifest
fake_start selfidx self-index
fake_start nodcd no-dcd

# ---------------------------------------------------------------- assertions
# expect_failure NAME KEYWORD_ERE CMD... : CMD exits nonzero and below 128,
# and writes exactly one line to stderr, which matches KEYWORD_ERE
# (case-insensitively).
expect_failure() {
  local name=$1 keyword=$2 rc=0
  shift 2
  "$@" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || rc=$?
  ((rc != 0)) || fail "$name: exited 0"
  ((rc < 128)) || fail "$name: killed by a signal (exit $rc): $(cat "$TEST_TMP/$name.err")"
  assert_eq "$(wc -l <"$TEST_TMP/$name.err")" 1 "$name: lines of error ($(head -c 600 "$TEST_TMP/$name.err"))"
  grep -qiE "$keyword" "$TEST_TMP/$name.err" || fail "$name: error does not say '$keyword': $(cat "$TEST_TMP/$name.err")"
  note "$name (exit $rc): $(cat "$TEST_TMP/$name.err")"
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
expect_failure traversal-src 'repository|invalid|reference' copy "$src_ADDR/../etc/passwd:v1" "$dst_ADDR/app:v1"
expect_failure traversal-dst 'repository|invalid|reference' copy "$src_ADDR/app:v1" "$dst_ADDR/app/../../etc:v1"
expect_failure dot-dot-component 'repository|invalid|reference' copy "$src_ADDR/app:v1" "$dst_ADDR/a/../b:v1"
expect_failure uppercase-src 'repository|invalid|reference|lowercase' copy "$src_ADDR/App:v1" "$dst_ADDR/app:v1"
expect_failure uppercase-dst 'repository|invalid|reference|lowercase' copy "$src_ADDR/app:v1" "$dst_ADDR/Team/App:v1"
expect_failure too-long 'long|255|repository' copy "$src_ADDR/$long:v1" "$dst_ADDR/app:v1"
expect_failure too-long-dst 'long|255|repository' copy "$src_ADDR/app:v1" "$dst_ADDR/$long:v1"
expect_failure bad-digest 'digest' copy "$src_ADDR/app@sha256:abc" "$dst_ADDR/app:v1"
expect_failure bad-digest-upper 'digest' copy "$src_ADDR/app@sha256:$(printf 'A%.0s' $(seq 1 64))" "$dst_ADDR/app:v1"
expect_failure bad-digest-algo 'digest|algorithm|sha256' copy "$src_ADDR/app@md5:d41d8cd98f00b204e9800998ecf8427e" "$dst_ADDR/app:v1"
expect_failure bad-tag 'tag|reference|invalid' copy "$src_ADDR/app:-v1" "$dst_ADDR/app:v1"
assert_eq "$(registry_count_requests src '.*' '.*' '' 'ferry/.*')" 0 "invalid references: no request to src"
assert_eq "$(registry_count_requests dst '.*' '.*' '' 'ferry/.*')" 0 "invalid references: no request to dst"
dst_untouched "invalid references"
pass "invalid repository names, tags and digests are refused before any request"

# ------------------------------------------------ misbehaving registries (copy)
expect_failure token-garbage 'token' copy "$tokens_ADDR/app:v1" "$dst_ADDR/app:v1"
dst_untouched "token endpoint answering garbage"
pass "a token endpoint answering garbage: one line naming the token, nothing written"

expect_failure html 'html|media type|manifest|content' copy "$html_ADDR/app:v1" "$dst_ADDR/app:v1"
expect_failure html-502 '502' copy "$proxy_ADDR/app:v1" "$dst_ADDR/app:v1"
if grep -qi '<html\|<body\|proxy' "$TEST_TMP/html.err" "$TEST_TMP/html-502.err"; then
  fail "the HTML reached the error line: $(cat "$TEST_TMP/html.err" "$TEST_TMP/html-502.err")"
fi
dst_untouched "registry answering HTML"
pass "a registry answering HTML (200 and 502): one line, no HTML in it, nothing written"

expect_failure big-manifest 'over|too big|4194304|4 MiB' copy "$big_ADDR/app:v1" "$dst_ADDR/app:v1"
dst_untouched "manifest over 4 MiB"
pass "a manifest over 4 MiB: refused, nothing written"

expect_failure self-index 'itself|digest|does not match' copy "$selfidx_ADDR/app:v1" "$dst_ADDR/app:v1"
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
expect_failure sync-traversal-repo 'repositories|repository' "$FERRY" sync -c "$TEST_TMP/bad-poll-repo.yaml"
grep -q 'bad-poll-repo.yaml:[0-9]' "$TEST_TMP/sync-traversal-repo.err" || fail "no FILE:LINE: $(cat "$TEST_TMP/sync-traversal-repo.err")"
write_config "$TEST_TMP/bad-upper-repo.yaml" "http://$src_ADDR" "" "" 'repositories: [Team/App]'
expect_failure sync-uppercase-repo 'repositories|repository' "$FERRY" sync -c "$TEST_TMP/bad-upper-repo.yaml"
write_config "$TEST_TMP/bad-long-repo.yaml" "http://$src_ADDR" "" "" "repositories: [$long]"
expect_failure sync-long-repo 'repositories|repository' "$FERRY" sync -c "$TEST_TMP/bad-long-repo.yaml"
write_config "$TEST_TMP/bad-template.yaml" "http://$src_ADDR" "" "../{repo}"
expect_failure sync-template-traversal 'repository|template' "$FERRY" sync -c "$TEST_TMP/bad-template.yaml"
write_config "$TEST_TMP/bad-template-upper.yaml" "http://$src_ADDR" "" "Mirror/{repo}"
expect_failure sync-template-uppercase 'repository|template' "$FERRY" sync -c "$TEST_TMP/bad-template-upper.yaml"
snapshot >"$TEST_TMP/data.after"
diff -u "$TEST_TMP/data.before" "$TEST_TMP/data.after" >&2 || fail "a rejected config changed the data_dir"
dst_untouched "rejected configs"
pass "configs with invalid repository names are refused with FILE:LINE; the journal is untouched"

# ------------------------------------------------ ferry sync: bad registries
# expect_sync_failed NAME KEYWORD_ERE SOURCE_ADDR : a sync from that source
# exits nonzero (not a crash) and its summary (stdout) has exactly one
# FAILED line, which names the problem; nothing reaches the destination.
expect_sync_failed() {
  local name=$1 keyword=$2 addr=$3 sessions_ok=${4:-0} rc=0
  rm -rf "$data"
  write_config "$TEST_TMP/$name.yaml" "http://$addr"
  "$FERRY" sync -c "$TEST_TMP/$name.yaml" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || rc=$?
  ((rc != 0)) || fail "$name: sync exited 0: $(cat "$TEST_TMP/$name.err")"
  ((rc < 128)) || fail "$name: sync killed by a signal (exit $rc): $(cat "$TEST_TMP/$name.err")"
  local failed
  # The summary, on stdout, names each failure once.
  failed=$(grep '^FAILED' "$TEST_TMP/$name.out" || true)
  assert_eq "$(grep -c . <<<"$failed")" 1 "$name: FAILED lines ($(cat "$TEST_TMP/$name.out" "$TEST_TMP/$name.err"))"
  grep -qiE "$keyword" <<<"$failed" || fail "$name: failure does not say '$keyword': $failed"
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
expect_sync_failed sync-token-garbage 'token' "$tokens_ADDR"
expect_sync_failed sync-html 'html|media type|manifest|content|json|catalog|tags' "$html_ADDR"
expect_sync_failed sync-big-manifest 'over|too big|4194304|4 MiB' "$big_ADDR"
expect_sync_failed sync-self-index 'itself|digest|does not match' "$selfidx_ADDR"
# A HEAD without Docker-Content-Digest is not a tag to skip: the poller GETs
# the manifest for its digest, and the job then fails on the missing blob.
expect_sync_failed sync-no-digest-header 'blob|not found|404|unknown' "$nodcd_ADDR" 1
pass "ferry sync from misbehaving registries: the failure is named, nothing written"
