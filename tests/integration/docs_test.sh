#!/usr/bin/env bash
# The documentation agrees with the program: every command `ferry --help`
# lists is in the README's command table and has its own --help; every flag a
# command's --help prints is in the README; every configuration key of
# replicator/config/config.h's reference is in the README's Configuration section;
# every metric the API exports and every HTTP route is in the README; every
# build.sh command is in the README's Build table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
readme="$FERRY_SOURCE_DIR/README.md"
[[ -f "$readme" ]] || fail "no README.md at $readme"

# section TITLE : the README's lines from "## TITLE" to the next "## "
section() {
  awk -v t="## $1" 'index($0, t) == 1 { on = 1; next } on && /^## / { exit } on' "$readme"
}

missing=()

# Commands: `ferry --help` and the README's table name the same ones.
"$FERRY" --help >"$TEST_TMP/help.txt"
mapfile -t commands < <(sed -n '/^commands:/,/^$/p' "$TEST_TMP/help.txt" | awk 'NR > 1 && /^  [a-z]/ { print $1 }')
((${#commands[@]} >= 9)) || fail "ferry --help lists ${#commands[@]} commands: ${commands[*]}"
table=$(section Commands)
for c in "${commands[@]}"; do
  grep -qE "\`ferry $c( |\`)" <<<"$table" || missing+=("command '$c' (ferry --help) is not in the README's Commands table")
done
while IFS= read -r c; do
  printf '%s\n' "${commands[@]}" | grep -qx "$c" || missing+=("command '$c' (README) is not in ferry --help")
done < <(grep -oE '^\| `ferry [a-z]+' <<<"$table" | awk '{ print $3 }' | sort -u)

# Flags: every --flag of every command's --help is in the README.
nflags=0
for c in "${commands[@]}"; do
  rc=0
  "$FERRY" "$c" --help >"$TEST_TMP/help-$c.txt" 2>&1 || rc=$?
  assert_eq "$rc" 0 "ferry $c --help exits 0"
  grep -q "^usage: ferry $c" "$TEST_TMP/help-$c.txt" || missing+=("ferry $c --help prints no usage line")
  while IFS= read -r flag; do
    nflags=$((nflags + 1))
    # The whole flag: `--dest` is not documented by `--dest-creds`, nor
    # `--tls` by `--dest-tls` (a letter or '-' on either side is another flag).
    grep -qE -- "(^|[^a-zA-Z0-9-])${flag}([^a-zA-Z0-9-]|\$)" "$readme" || missing+=("ferry $c $flag is not in the README")
  done < <(grep -oE -- '--[a-z][a-z-]+' "$TEST_TMP/help-$c.txt" | sort -u)
done
((nflags >= 50)) || fail "only $nflags flags found in the --help texts: the extraction is broken"

# Configuration keys: config.h's reference comment against the README.
config=$(section Configuration)
nkeys=0
while IFS= read -r key; do
  nkeys=$((nkeys + 1))
  grep -qE "(^|[ {,])$key:" <<<"$config" || missing+=("config key '$key' is not in the README's Configuration section")
done < <(sed -n '/The file, with every key and its default:/,/^ \*\/$/p' "$FERRY_SOURCE_DIR"/replicator/config/config.h |
  grep -oE '^ \*( +- )? +[a-z_]+:' | grep -oE '[a-z_]+:$' | tr -d ':' | sort -u)
((nkeys >= 40)) || fail "only $nkeys config keys found in config.h: the extraction is broken"

# Metrics: every family the API writes is documented.
nmetrics=0
while IFS= read -r m; do
  nmetrics=$((nmetrics + 1))
  grep -qF "$m" "$readme" || missing+=("metric $m is not in the README")
done < <(grep -ohE '"ferry_[a-z_]+' "$FERRY_SOURCE_DIR"/replicator/daemon/*.c | tr -d '"' |
  grep -vE '_(bucket|sum|count)$' | sort -u)
((nmetrics >= 10)) || fail "only $nmetrics metrics found in replicator/daemon/: the extraction is broken"

# HTTP routes: every path the server answers is in the README.
nroutes=0
while IFS= read -r route; do
  nroutes=$((nroutes + 1))
  grep -qF "$route" "$readme" || missing+=("route $route is not in the README")
done < <(grep -ohE '"/(v1/[a-z]+|metrics|healthz|readyz)' "$FERRY_SOURCE_DIR"/replicator/daemon/*.c \
  | tr -d '"' | sort -u)
((nroutes >= 8)) || fail "only $nroutes routes found in replicator/daemon/: the extraction is broken"

# build.sh: every command of its usage line is in the Build table.
usage=$(grep -oE 'usage: \./build\.sh [^"]+' "$FERRY_SOURCE_DIR/build.sh")
build=$(section Build)
for c in $(grep -oE '[a-z]+' <<<"${usage#usage: ./build.sh}" | grep -vE '^(no|sanitize|only|short|target|name)$' | sort -u); do
  grep -qF "./build.sh $c" <<<"$build" || missing+=("./build.sh $c is not in the README's Build table")
done

if ((${#missing[@]} > 0)); then
  printf '  %s\n' "${missing[@]}" >&2
  fail "${#missing[@]} disagreements between the program and the README"
fi
pass "README agrees with --help (${#commands[@]} commands, $nflags flags), config.h ($nkeys keys), the metrics ($nmetrics), the routes ($nroutes) and build.sh"
