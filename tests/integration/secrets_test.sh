#!/usr/bin/env bash
# Secrets stay with their owners (issue 14):
#  creds     --creds USER:PASSWORD (and --src-creds, --dest-creds) warns that
#            ps shows it and is wiped from /proc/PID/cmdline; --creds-file
#            FILE and --creds-stdin do the same without the process list
#  env       a `ferry serve` given password_env, api_token_env and
#            webhook_token_env keeps none of them in /proc/PID/environ, and a
#            SIGHUP reload still finds them
#  dumpable  `ferry serve` is not dumpable (/proc/PID is root's, another
#            process of its user cannot read its environ) unless FERRY_DUMPABLE=1
#  perms     a password_file, token file or --creds-file others can read is
#            warned about, naming it; an existing data_dir is made 0700; nothing
#            the journal writes is readable by group or others
#  placeholder  a secret left at deploy/k8s's "change-me..." is refused (exit 2)
# SECRETS_ONLY="env perms" runs some of them (each stands alone).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

only() { [[ -z "${SECRETS_ONLY:-}" || " $SECRETS_ONLY " == *" $1 "* ]]; }

SRC_PW=src-pw-$RANDOM$RANDOM
DST_PW=dst-pw-$RANDOM$RANDOM
API_TOKEN=api-tok-$RANDOM$RANDOM
HOOK_TOKEN=hook-tok-$RANDOM$RANDOM
if only creds || only env; then
  registry_start src --htpasswd "alice:$SRC_PW"
  registry_start dst --htpasswd "bob:$DST_PW"
  fixturegen push --registry "$src_ADDR" --repo a/app --tag v1 --seed 61 --layers 1 --layer-size 10K \
    --user alice --password "$SRC_PW" --compact >"$TEST_TMP/app.json"
  digest=$(jq -r .digest "$TEST_TMP/app.json")
fi

# no_warning FILE : FILE holds no "puts the password in the process list" line
no_warning() {
  if grep -q 'process list' "$1"; then fail "an unexpected warning: $(cat "$1")"; fi
}

if only creds; then
  # --src-creds on the command line: it works, with one warning naming the better flags.
  printf 'bob:%s\n' "$DST_PW" >"$TEST_TMP/dst.creds"
  chmod 600 "$TEST_TMP/dst.creds"
  "$FERRY" copy --no-cache --src-creds "alice:$SRC_PW" --dest-creds-file "$TEST_TMP/dst.creds" \
    "$src_ADDR/a/app:v1" "$dst_ADDR/flag/app:v1" 2>"$TEST_TMP/flag.err" || fail "copy: $(cat "$TEST_TMP/flag.err")"
  assert_eq "$(skopeo_raw "$dst_ADDR/flag/app:v1" --creds "bob:$DST_PW" | digest_of)" "$digest" "copied with --src-creds"
  assert_eq "$(grep -c 'process list' "$TEST_TMP/flag.err")" 1 "one warning"
  grep -qF -- '--src-creds puts the password in the process list; use --src-creds-file FILE or --src-creds-stdin' \
    "$TEST_TMP/flag.err" || fail "no warning for --src-creds: $(cat "$TEST_TMP/flag.err")"
  pass "--src-creds works and warns once; --dest-creds-file reads the first line"

  # The password leaves /proc/PID/cmdline once parsed: `ferry ls` against a
  # listener that never answers stays alive long enough to look.
  hole=$(free_port)
  start_bg hole python3 -c "import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $hole)); s.listen(16); time.sleep(120)"
  wait_until 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$hole" 2>/dev/null || fail "no listener"
  start_bg lshang "$FERRY" ls --retries 1 --creds "alice:$SRC_PW" "127.0.0.1:$hole/app"
  # Ferry's own command line (not that of what starts it), without the password.
  cmdline_clean() {
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$lshang_PID/cmdline") || return 1
    grep -q -- '--creds alice:' <<<"$cmd" && ! grep -qF -- "$SRC_PW" <<<"$cmd"
  }
  wait_until 5 cmdline_clean || fail "the password is still in /proc/PID/cmdline: $(tr '\0' ' ' <"/proc/$lshang_PID/cmdline")"
  kill -0 "$lshang_PID" 2>/dev/null || fail "ferry ls ended before the look: $(cat "$TEST_TMP/lshang.log")"
  tr '\0' ' ' <"/proc/$lshang_PID/cmdline" | grep -q -- '--creds alice:' || fail "the user went too"
  stop_bg lshang
  pass "the password is overwritten in /proc/PID/cmdline (ps shows --creds alice:)"
  # FERRY_PASSWORD leaves /proc/PID/environ once read.
  start_bg lsenv env FERRY_USERNAME=alice "FERRY_PASSWORD=$SRC_PW" "$FERRY" ls --retries 1 "127.0.0.1:$hole/app"
  # Ferry itself (not the env or setpriv that start it: their environ lacks both
  # variables) holds the user name, and no longer the password.
  environ_clean() {
    local env
    env=$(tr '\0' '\n' <"/proc/$lsenv_PID/environ") || return 1
    grep -qx FERRY_USERNAME=alice <<<"$env" && ! grep -qF -- "$SRC_PW" <<<"$env"
  }
  wait_until 5 environ_clean || fail "FERRY_PASSWORD is still in /proc/PID/environ"
  kill -0 "$lsenv_PID" 2>/dev/null || fail "ferry ls ended before the look: $(cat "$TEST_TMP/lsenv.log")"
  tr '\0' '\n' <"/proc/$lsenv_PID/environ" | grep -qx FERRY_USERNAME=alice || fail "the user name went too"
  stop_bg lsenv
  stop_bg hole
  pass "FERRY_PASSWORD is taken out of /proc/PID/environ once read"

  # --creds-stdin and --creds-file: no warning.
  printf 'alice:%s\n' "$SRC_PW" | "$FERRY" ls --creds-stdin "$src_ADDR/a/app" >"$TEST_TMP/ls.out" 2>"$TEST_TMP/ls.err" ||
    fail "ls --creds-stdin: $(cat "$TEST_TMP/ls.err")"
  assert_eq "$(cat "$TEST_TMP/ls.out")" v1 "ls --creds-stdin"
  no_warning "$TEST_TMP/ls.err"
  printf 'alice:%s\nbob:%s\n' "$SRC_PW" "$DST_PW" |
    "$FERRY" copy --no-cache --src-creds-stdin --dest-creds-stdin "$src_ADDR/a/app:v1" "$dst_ADDR/stdin/app:v1" \
      2>"$TEST_TMP/stdin.err" || fail "copy --src-creds-stdin --dest-creds-stdin: $(cat "$TEST_TMP/stdin.err")"
  assert_eq "$(skopeo_raw "$dst_ADDR/stdin/app:v1" --creds "bob:$DST_PW" | digest_of)" "$digest" "copied with two stdin lines"
  no_warning "$TEST_TMP/stdin.err"
  printf 'alice:%s\n' "$SRC_PW" >"$TEST_TMP/src.creds"
  chmod 600 "$TEST_TMP/src.creds"
  "$FERRY" catalog --creds-file "$TEST_TMP/src.creds" "$src_ADDR" >"$TEST_TMP/cat.out" 2>"$TEST_TMP/cat.err" ||
    fail "catalog --creds-file: $(cat "$TEST_TMP/cat.err")"
  grep -qx a/app "$TEST_TMP/cat.out" || fail "catalog --creds-file: $(cat "$TEST_TMP/cat.out")"
  if grep -q . "$TEST_TMP/cat.err"; then fail "catalog --creds-file at 0600 said: $(cat "$TEST_TMP/cat.err")"; fi
  pass "--creds-stdin (one line per registry, SRC's first) and --creds-file, without a warning"

  # Two sources for one registry, or no line on stdin: usage errors.
  rc=0
  "$FERRY" ls --creds "alice:x" --creds-file "$TEST_TMP/src.creds" "$src_ADDR/a/app" >/dev/null 2>"$TEST_TMP/two.err" || rc=$?
  assert_eq "$rc" 2 "--creds with --creds-file"
  rc=0
  "$FERRY" ls --creds-stdin "$src_ADDR/a/app" </dev/null >/dev/null 2>"$TEST_TMP/empty.err" || rc=$?
  assert_eq "$rc" 2 "--creds-stdin with nothing on stdin"
  pass "one credentials flag per registry; an empty stdin is a usage error"
fi

if only env; then
  port=$(free_port)
  write_config() { # EXTRA_RULE_LINE
    cat >"$TEST_TMP/serve.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
api_token_env: FERRY_T_API
webhook_token_env: FERRY_T_HOOK
poll_interval: 300ms
registries:
  src: { url: "http://$src_ADDR", username: alice, password_env: FERRY_T_SRC_PW }
  dst: { url: "http://$dst_ADDR", username: bob, password_env: FERRY_T_DST_PW }
rules:
  - { name: a, source: src, repositories: ["a/**"], destinations: [{ registry: dst, repository: "env/{repo}" }] }
$1
YAML
    chmod 600 "$TEST_TMP/serve.yaml"
  }
  write_config ""
  mkdir -m 755 "$TEST_TMP/data" # an existing data_dir open to others: ferry serve makes it 0700
  FERRY_T_API=$API_TOKEN FERRY_T_HOOK=$HOOK_TOKEN FERRY_T_SRC_PW=$SRC_PW FERRY_T_DST_PW=$DST_PW \
    ferry_serve_start ferry "$TEST_TMP/serve.yaml" "$port"
  API="http://127.0.0.1:$port"
  assert_eq "$(stat -c %a "$TEST_TMP/data")" 700 "data_dir mode after ferry serve"
  # environ_clean : no secret in the daemon's /proc/PID/environ
  environ_clean() {
    local s
    for s in "$SRC_PW" "$DST_PW" "$API_TOKEN" "$HOOK_TOKEN"; do
      if tr '\0' '\n' <"/proc/$ferry_PID/environ" | grep -qF -- "$s"; then
        fail "a secret (${s%%-*}) is in /proc/PID/environ: $(tr '\0' '\n' <"/proc/$ferry_PID/environ" | grep -F -- "$s" | cut -d= -f1)"
      fi
    done
  }
  environ_clean
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API/v1/status")" 401 "API without the token"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_TOKEN" "$API/v1/status")" 200 "API with the token"
  wait_until 20 curl -sf -o /dev/null -u "bob:$DST_PW" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$dst_URL/v2/env/a/app/manifests/v1" ||
    fail "a/app was not replicated with the passwords from the environment: $(tail -5 "$TEST_TMP/ferry.log")"
  pass "password_env, api_token_env and webhook_token_env work and are not in /proc/PID/environ"

  # A reload reads the config again: the variables are gone, the values kept.
  write_config '  - { name: b, source: src, repositories: ["b/**"], destinations: [{ registry: dst, repository: "env/{repo}" }] }'
  kill -HUP "$ferry_PID"
  wait_until 20 grep -qE 'reloaded config=|reload refused' "$TEST_TMP/ferry.log" || fail "no reload: $(tail -5 "$TEST_TMP/ferry.log")"
  if grep -q 'reload refused' "$TEST_TMP/ferry.log"; then fail "the reload was refused: $(grep 'reload refused' "$TEST_TMP/ferry.log")"; fi
  fixturegen push --registry "$src_ADDR" --repo b/app --tag v1 --seed 62 --layers 1 --layer-size 10K \
    --user alice --password "$SRC_PW" --compact >/dev/null
  wait_until 20 curl -sf -o /dev/null -u "bob:$DST_PW" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$dst_URL/v2/env/b/app/manifests/v1" ||
    fail "the reloaded rule did not replicate b/app: $(tail -5 "$TEST_TMP/ferry.log")"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API/v1/status")" 401 "API without the token after the reload"
  assert_eq "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_TOKEN" "$API/v1/status")" 200 "API with the token after the reload"
  environ_clean
  pass "SIGHUP reload keeps the secrets taken from the environment"
  kill -TERM "$ferry_PID"
  wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not stop"
  found=$(find "$TEST_TMP/data" -perm /044 | head -5)
  [[ -z "$found" ]] || fail "files in data_dir readable by group or others: $found"
  pass "nothing in the daemon's data_dir is readable by group or others"
fi

if only dumpable; then
  # As root, another user is needed to see it: /proc/PID of a non-dumpable
  # process is root's, otherwise its user's; and only then can a second
  # process of that user read its environ.
  runner=()
  owner=$(id -un)
  d=$TEST_TMP/dump
  mkdir -p "$d"
  if [[ $(id -u) == 0 ]]; then
    owner=nobody
    runner=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups --)
    chmod 711 "$TEST_TMP"
    chown nobody "$d"
  fi
  dport=$(free_port)
  printf 'data_dir: %s/data\nlisten: 127.0.0.1:%s\n' "$d" "$dport" >"$d/ferry.yaml"
  chmod 644 "$d/ferry.yaml"
  for mode in default dumpable; do
    if [[ $mode == dumpable ]]; then export FERRY_DUMPABLE=1; fi
    start_bg "dump_$mode" "${runner[@]}" "$FERRY" serve -c "$d/ferry.yaml"
    pid_var="dump_${mode}_PID"
    pid=${!pid_var}
    wait_until 15 curl -sf -o /dev/null "http://127.0.0.1:$dport/healthz" || fail "ferry serve ($mode): $(cat "$TEST_TMP/dump_$mode.log")"
    got=$(stat -c %U "/proc/$pid/status")
    peek=readable
    "${runner[@]}" cat "/proc/$pid/environ" >/dev/null 2>&1 || peek=unreadable
    if [[ $mode == default ]]; then
      assert_eq "$got" root "/proc/PID of ferry serve (running as $owner) belongs to"
      assert_eq "$peek" unreadable "another process of $owner reading its environ"
    else
      assert_eq "$got" "$owner" "/proc/PID of ferry serve with FERRY_DUMPABLE=1 belongs to"
      assert_eq "$peek" readable "with FERRY_DUMPABLE=1, another process of $owner reading its environ"
    fi
    stop_bg "dump_$mode"
    unset FERRY_DUMPABLE
  done
  pass "ferry serve is not dumpable (/proc/PID is root's); FERRY_DUMPABLE=1 keeps it dumpable"
fi

if only perms; then
  p=$TEST_TMP/perms
  mkdir -p "$p"
  for f in hook api reg creds; do
    if [[ $f == creds ]]; then echo "alice:x-$RANDOM" >"$p/$f.secret"; else echo "$f-$RANDOM$RANDOM" >"$p/$f.secret"; fi
  done
  cat >"$p/ferry.yaml" <<YAML
data_dir: $p/data
webhook_token_file: hook.secret
api_token_file: $p/api.secret
registries:
  r: { url: "http://127.0.0.1:1", username: u, password_file: reg.secret }
YAML
  chmod 600 "$p/ferry.yaml"
  chmod 644 "$p"/*.secret
  "$FERRY" serve --check-config -c "$p/ferry.yaml" 2>"$p/check.err" || fail "--check-config: $(cat "$p/check.err")"
  for f in hook api reg; do
    assert_eq "$(grep -c "readable by group or others.*path=$p/$f.secret\$" "$p/check.err")" 1 "warnings naming $f.secret"
  done
  rc=0
  "$FERRY" ls --retries 1 --creds-file "$p/creds.secret" 127.0.0.1:1/app >/dev/null 2>"$p/creds.err" || rc=$?
  grep -q "readable by group or others.*path=$p/creds.secret\$" "$p/creds.err" || fail "no warning for --creds-file at 0644: $(cat "$p/creds.err")"
  chmod 640 "$p/reg.secret"
  chmod 600 "$p/hook.secret" "$p/api.secret" "$p/creds.secret"
  "$FERRY" serve --check-config -c "$p/ferry.yaml" 2>"$p/check2.err" || fail "--check-config: $(cat "$p/check2.err")"
  assert_eq "$(grep -c 'readable by group or others' "$p/check2.err")" 1 "warnings with only reg.secret group-readable"
  grep -q "path=$p/reg.secret\$" "$p/check2.err" || fail "the group-readable file is not named: $(cat "$p/check2.err")"
  chmod 600 "$p/reg.secret"
  "$FERRY" serve --check-config -c "$p/ferry.yaml" 2>"$p/check3.err" || fail "--check-config: $(cat "$p/check3.err")"
  if grep -q 'readable' "$p/check3.err"; then fail "warned at 0600: $(cat "$p/check3.err")"; fi
  for f in hook api reg creds; do
    if grep -qF -- "$(cat "$p/$f.secret")" "$p"/*.err; then fail "the secret of $f.secret was printed"; fi
  done
  pass "secret files group or others can read are warned about, one line naming each; at 0600 none"

  # An existing data_dir open to others is made 0700, and the journal's files are its user's alone.
  printf 'data_dir: %s/old\n' "$p" >"$p/sync.yaml"
  mkdir -m 755 "$p/old"
  "$FERRY" sync -c "$p/sync.yaml" >/dev/null 2>"$p/sync.err" || fail "sync: $(cat "$p/sync.err")"
  assert_eq "$(stat -c %a "$p/old")" 700 "data_dir mode after ferry sync"
  assert_eq "$(grep -c 'data_dir was open to group or others; made it 0700' "$p/sync.err")" 1 "warnings about data_dir"
  found=$(find "$p/old" -perm /044 | head -5)
  [[ -z "$found" ]] || fail "files in data_dir readable by group or others: $found"
  # What an older Ferry left: a journal open to all. The next run closes it, once.
  chmod 755 "$p/old" "$p/old/journal"
  chmod 644 "$p"/old/journal/*
  "$FERRY" sync -c "$p/sync.yaml" >/dev/null 2>"$p/sync2.err" || fail "sync: $(cat "$p/sync2.err")"
  grep -q 'journal was readable by group or others; made it private' "$p/sync2.err" || fail "no journal warning: $(cat "$p/sync2.err")"
  found=$(find "$p/old" -perm /044 | head -5)
  [[ -z "$found" ]] || fail "files in data_dir still readable by group or others: $found"
  "$FERRY" sync -c "$p/sync.yaml" >/dev/null 2>"$p/sync3.err" || fail "sync: $(cat "$p/sync3.err")"
  if grep -q 'group or others' "$p/sync3.err"; then fail "warned again: $(cat "$p/sync3.err")"; fi
  pass "an existing data_dir is made 0700 and an open journal private, each said once; nothing new is readable by others"
fi

if only placeholder; then
  for value in change-me-api change-me; do
    printf 'api_token: %s\n' "$value" >"$TEST_TMP/ph.yaml"
    chmod 600 "$TEST_TMP/ph.yaml"
    rc=0
    "$FERRY" serve --check-config -c "$TEST_TMP/ph.yaml" 2>"$TEST_TMP/ph.err" || rc=$?
    assert_eq "$rc" 2 "--check-config with api_token: $value"
    grep -q 'ph.yaml:1: api_token: the token is the shipped placeholder; set a real secret' "$TEST_TMP/ph.err" ||
      fail "no placeholder error: $(cat "$TEST_TMP/ph.err")"
  done
  printf 'registries:\n  r: { url: "http://127.0.0.1:1", username: u, password_env: FERRY_T_PH }\n' >"$TEST_TMP/ph.yaml"
  rc=0
  FERRY_T_PH=change-me "$FERRY" serve --check-config -c "$TEST_TMP/ph.yaml" 2>"$TEST_TMP/ph.err" || rc=$?
  assert_eq "$rc" 2 "--check-config with password_env at the placeholder"
  grep -q 'registries.r.password_env: FERRY_T_PH is the shipped placeholder; set a real secret' "$TEST_TMP/ph.err" ||
    fail "no placeholder error: $(cat "$TEST_TMP/ph.err")"
  FERRY_T_PH=a-real-one "$FERRY" serve --check-config -c "$TEST_TMP/ph.yaml" 2>"$TEST_TMP/ph.err" ||
    fail "a real secret refused: $(cat "$TEST_TMP/ph.err")"
  pass "a secret left at the shipped placeholder is refused (exit 2), a real one accepted"
fi
