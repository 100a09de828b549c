#!/usr/bin/env bash
# Flags go before or after the positional words, as git and kubectl take
# them, for every command and subcommand: `ferry journal ls -c FILE` is
# `ferry journal -c FILE ls`, whatever POSIXLY_CORRECT says, and `--` still
# ends the flags. The commands come from `ferry --help` and the subcommands
# from each command's --help (a usage line with COMMAND), so a new one fails
# here until it has a case below. Each case runs its flags before the words,
# after them, in between (two words or more, or before a subcommand's name),
# and after them under POSIXLY_CORRECT=1; no variant may be a usage error,
# every variant must exit the same, and where the output is deterministic
# (journal ls, show, jobs, stats, ls, catalog, ...) print the same.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

registry_start src
registry_start dst
port=$(free_port)
CFG=$TEST_TMP/ferry.yaml
cat >"$CFG" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR" }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, repositories: ["app"], destinations: [{ registry: dst }] }
YAML
chmod 600 "$CFG"
fixturegen push --registry "$src_ADDR" --repo app --tag v1 --seed 81 --layers 1 --layer-size 16K --compact >"$TEST_TMP/app.json"
digest=$(jq -r .digest "$TEST_TMP/app.json")
"$FERRY" sync -c "$CFG" >"$TEST_TMP/sync0.out" 2>&1 || fail "the first sync: $(cat "$TEST_TMP/sync0.out")"

# ---- the commands and subcommands, from the help texts ----
"$FERRY" --help >"$TEST_TMP/help.txt"
mapfile -t commands < <(sed -n '/^commands:/,/^$/p' "$TEST_TMP/help.txt" | awk 'NR > 1 && /^  [a-z]/ { print $1 }')
((${#commands[@]} >= 9)) || fail "ferry --help lists ${#commands[@]} commands: ${commands[*]}"
targets=()
for c in "${commands[@]}"; do
  "$FERRY" "$c" --help >"$TEST_TMP/help-$c.txt" 2>&1 || fail "ferry $c --help exits non-zero"
  if grep -qE "^usage: ferry $c .*COMMAND" "$TEST_TMP/help-$c.txt"; then
    # The subcommands: the indented lowercase words of its help.
    mapfile -t subs < <(awk '/^  [a-z]+( |$)/ { print $1 }' "$TEST_TMP/help-$c.txt")
    ((${#subs[@]} >= 1)) || fail "ferry $c takes a COMMAND but its --help lists none"
    for s in "${subs[@]}"; do targets+=("$c $s"); done
  else
    targets+=("$c")
  fi
done
note "commands and subcommands: ${targets[*]}"

# ---- a case per command: its flags, its words, what it must do ----
# Each sets OPTS (groups of words kept together: a flag and its value), WORDS
# (the positional words after the command, a subcommand's name excluded),
# RC (the exit status every variant must give), FILTER (what of stdout must
# be the same in every variant; empty: nothing) and CHECK (run after each
# variant, with its stderr in $LAST_ERR; empty: nothing).
daemon_started=0
start_daemon() {
  if ((daemon_started == 0)); then
    ferry_serve_start ferry "$CFG" "$port"
    daemon_started=1
  fi
}
f_ok() { jq -c .ok; }
f_verify() { jq -c 'del(.seconds)'; }
f_names() { jq -c '[.destinations[].name]'; }
f_jobs() { jq -c '[.destination, .repository, .digest, .state]'; }
f_stats() { grep -Ev '^(dedup_keys|table_bytes|wal_bytes|bytes_per_entry) '; }
said_valid() { grep -q "ferry serve: $CFG is valid" "$LAST_ERR"; }
copied() { [[ "$(skopeo_raw "$dst_ADDR/cp/app:v1" | digest_of)" == "$digest" ]]; }
set_case() {
  OPTS=() WORDS=() RC=0 FILTER=cat CHECK=
  case "$1" in
  copy)
    OPTS=("--no-progress" "-j 2" "--retries 2")
    WORDS=("$src_ADDR/app:v1" "$dst_ADDR/cp/app:v1")
    FILTER= CHECK=copied ;;
  serve) OPTS=("--check-config" "-c $CFG") FILTER= CHECK=said_valid ;;
  sync) OPTS=("--json" "-c $CFG") FILTER=f_ok ;;
  verify) OPTS=("--json" "-c $CFG") FILTER=f_verify ;;
  retry) OPTS=("--dest dst" "-c $CFG") ;;
  status)
    start_daemon
    OPTS=("--json" "-c $CFG" "--dest dst") FILTER=f_names ;;
  "journal ls") OPTS=("--json" "-c $CFG" "--limit 5") ;;
  "journal show") OPTS=("-c $CFG") WORDS=(1) ;;
  "journal append")
    OPTS=("-c $CFG" "--source src" "--repo app" "--digest $digest" "--tag v1")
    FILTER= ;;
  "journal stats") OPTS=("-c $CFG") FILTER=f_stats ;;
  "journal jobs") OPTS=("--json" "-c $CFG" "--state COMPLETE") FILTER=f_jobs ;;
  ls) OPTS=("--json" "--retries 2") WORDS=("$src_ADDR/app") ;;
  catalog) OPTS=("--json" "--page-size 10") WORDS=("$src_ADDR") ;;
  *) fail "'ferry $1' (from --help) has no case in this test: add one" ;;
  esac
}

# run_variant NAME [ENV=V] WORD... : ferry with those words; its stdout (through
# FILTER) to $TEST_TMP/NAME.out, stderr to NAME.err; prints the exit status.
run_variant() {
  local name=$1 rc=0
  shift
  env "$@" >"$TEST_TMP/$name.raw" 2>"$TEST_TMP/$name.err" </dev/null || rc=$?
  if [[ -n "$FILTER" ]]; then
    $FILTER <"$TEST_TMP/$name.raw" >"$TEST_TMP/$name.out" 2>&1 || true
  else
    : >"$TEST_TMP/$name.out"
  fi
  echo "$rc"
}

usage_said() { grep -qiE "want |see 'ferry|unrecognized option|invalid option|unknown command|unexpected '|requires an argument" "$1"; }

ncases=0
for t in "${targets[@]}"; do
  set_case "$t"
  read -r cmd sub <<<"$t"
  opts=()
  for g in "${OPTS[@]}"; do
    read -ra w <<<"$g"
    opts+=("${w[@]}")
  done
  reversed=()
  for ((i = ${#OPTS[@]} - 1; i >= 0; i--)); do
    read -ra w <<<"${OPTS[i]}"
    reversed+=("${w[@]}")
  done
  # The variants, as one line of words each (no word has a space).
  variants=()
  if [[ -n "$sub" ]]; then
    variants+=("$cmd ${opts[*]} $sub ${WORDS[*]}")
    variants+=("$cmd $sub ${opts[*]} ${WORDS[*]}")
    variants+=("$cmd $sub ${WORDS[*]} ${reversed[*]}")
    variants+=("POSIXLY_CORRECT=1 $cmd $sub ${WORDS[*]} ${opts[*]}")
  else
    variants+=("$cmd ${opts[*]} ${WORDS[*]}")
    variants+=("$cmd ${WORDS[*]} ${reversed[*]}")
    variants+=("POSIXLY_CORRECT=1 $cmd ${WORDS[*]} ${opts[*]}")
    if ((${#WORDS[@]} >= 2)); then
      variants+=("$cmd ${WORDS[0]} ${opts[*]} ${WORDS[*]:1}")
    fi
  fi
  first=
  for i in "${!variants[@]}"; do
    read -ra line <<<"${variants[i]}"
    envs=()
    while [[ "${line[0]}" == *=* ]]; do
      envs+=("${line[0]}")
      line=("${line[@]:1}")
    done
    name="v-${t// /-}-$i"
    rc=$(run_variant "$name" "${envs[@]}" "$FERRY" "${line[@]}")
    shown="ferry ${variants[i]}"
    if usage_said "$TEST_TMP/$name.err"; then
      fail "$shown was refused as a usage error (exit $rc): $(head -c 400 "$TEST_TMP/$name.err")"
    fi
    assert_eq "$rc" "$RC" "$shown exits $RC ($(head -c 300 "$TEST_TMP/$name.err"))"
    LAST_ERR=$TEST_TMP/$name.err
    if [[ -n "$CHECK" ]]; then
      $CHECK || fail "$shown did not do its work ($CHECK)"
    fi
    if [[ -z "$first" ]]; then
      first=$name
      [[ -z "$FILTER" || -s "$TEST_TMP/$name.out" ]] || fail "$shown printed nothing"
    elif ! cmp -s "$TEST_TMP/$first.out" "$TEST_TMP/$name.out"; then
      fail "$shown printed otherwise than the first variant: $(diff "$TEST_TMP/$first.out" "$TEST_TMP/$name.out" | head -n 6)"
    fi
    ncases=$((ncases + 1))
  done
  # Its --help, after the words too.
  rc=0
  read -ra hw <<<"$t ${WORDS[*]} --help"
  "$FERRY" "${hw[@]}" >"$TEST_TMP/h.out" 2>&1 || rc=$?
  assert_eq "$rc" 0 "ferry ${hw[*]} exits 0"
  grep -q "^usage: ferry $cmd" "$TEST_TMP/h.out" || fail "ferry ${hw[*]} printed no usage: $(head -n 3 "$TEST_TMP/h.out")"
done
((ncases >= 3 * ${#targets[@]})) || fail "only $ncases variants ran for ${#targets[@]} commands"
pass "$ncases variants of ${#targets[@]} commands and subcommands: flags before, between and after the words"

# The right thing, either way: journal ls lists the same lines, by its text.
"$FERRY" journal -c "$CFG" ls >"$TEST_TMP/ls-before.out" || fail "journal -c FILE ls"
"$FERRY" journal ls -c "$CFG" >"$TEST_TMP/ls-after.out" || fail "journal ls -c FILE"
cmp -s "$TEST_TMP/ls-before.out" "$TEST_TMP/ls-after.out" || fail "journal ls lists otherwise with -c after it"
grep -qE "^1 +push +src +app +v1 +$digest" "$TEST_TMP/ls-before.out" || fail "journal ls: $(cat "$TEST_TMP/ls-before.out")"
pass "journal ls lists the same lines with -c before or after it"

# `--` ends the flags: what follows is a word, even with dashes.
"$FERRY" journal -c "$CFG" -- ls >"$TEST_TMP/dd1.out" 2>&1 || fail "journal -c FILE -- ls: $(cat "$TEST_TMP/dd1.out")"
rc=0
"$FERRY" journal -c "$CFG" ls -- --json >"$TEST_TMP/dd2.out" 2>"$TEST_TMP/dd2.err" || rc=$?
assert_eq "$rc" 2 "journal ls -- --json: --json is a word, and ls takes none"
grep -q "unexpected '--json'" "$TEST_TMP/dd2.err" || fail "journal ls -- --json said: $(cat "$TEST_TMP/dd2.err")"
[[ ! -s "$TEST_TMP/dd2.out" ]] || fail "journal ls -- --json listed: $(head -n 2 "$TEST_TMP/dd2.out")"
rc=0
"$FERRY" ls --json -- -c >"$TEST_TMP/dd3.out" 2>"$TEST_TMP/dd3.err" || rc=$?
assert_eq "$rc" 2 "ls -- -c: -c is the repository, which does not parse"
grep -q "ferry ls: -c" "$TEST_TMP/dd3.err" || fail "ls -- -c said: $(cat "$TEST_TMP/dd3.err")"
pass "-- ends the flags"

# Still refused: an unknown flag, a missing value, a stray word, anywhere.
refused() { # EXPECTED_RC WORD... : a usage error, said on stderr
  local want=$1 rc=0
  shift
  "$FERRY" "$@" >"$TEST_TMP/r.out" 2>"$TEST_TMP/r.err" </dev/null || rc=$?
  assert_eq "$rc" "$want" "ferry $* is a usage error"
  [[ -s "$TEST_TMP/r.err" ]] || fail "ferry $* said nothing"
}
refused 2 journal ls -c "$CFG" --bogus
refused 2 journal --bogus -c "$CFG" ls
refused 2 journal ls -c
refused 2 journal stats -c "$CFG" extra
refused 2 journal -c "$CFG" nosuch
refused 2 journal -c "$CFG"
refused 2 sync -c "$CFG" extra
refused 2 retry -c "$CFG"
refused 3 status -c "$CFG" extra
refused 2 copy "$src_ADDR/app:v1" --bogus "$dst_ADDR/cp/app:v1"
refused 2 ls "$src_ADDR/app" extra --json
pass "unknown flags, missing values and stray words are still refused"
