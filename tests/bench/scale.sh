#!/usr/bin/env bash
# shellcheck disable=SC2154 # src_*, dst_* are set by lib.sh's registry_start
# Benchmark: Ferry at 1,000 / 10,000 / 100,000 tags. What a large source
# costs Ferry: `ferry sync` fresh and as a no-op (same node, new node) against
# `skopeo sync`'s no-op, `ferry serve`'s poll rounds with and without
# webhooks, `ferry verify`, the journal on disk, and peak RSS against the
# number of tags; all on loopback.
#
#   bash tests/bench/scale.sh                         (3 runs at 1,000, 10,000, 100,000 tags: hours)
#   BENCH_SCALE_SIZES=1000 BENCH_RUNS=1 bash tests/bench/scale.sh   (a check: a few minutes)
#
# The source: tests/bench/scalegen.py writes SIZE tags straight into the
# storage directory of a Distribution registry (pushing 100,000 tags through
# the API would take hours): SIZE / 10 repositories scale/r… × 10 tags t0 …
# t9 over 1,000 distinct images (each its own config blob over one of 4
# small layers; tag t of repository r names image (r × 10 + t) mod 1,000).
#
# For each size, in a fresh area (src and dst registries from lib.sh, the
# previous size's stopped and removed, or kept under s<SIZE>/ with
# KEEP_TMP=1), BENCH_RUNS runs of, in order:
#   1. sync fresh     `ferry sync -c CONFIG` into an empty dst (restarted on
#                     empty storage), an empty data_dir: one rule ["**"] src -> dst
#   2. sync no-op     the same again, same data_dir (same node)
#   3. sync new node  the same with a fresh data_dir against the full dst
#   4. skopeo no-op   `skopeo sync --all --src yaml --dest docker
#                     --src-tls-verify=false --dest-tls-verify=false
#                     --preserve-digests SRC.yaml DST/scale` against the full
#                     dst (the YAML lists every repository, all tags; skopeo
#                     keeps only the last path element of a name, hence the
#                     scale/ prefix on the destination), its blob-info cache
#                     deleted first; only when SIZE <= BENCH_SCALE_SKOPEO_MAX
#   5. serve          `ferry serve` on run 1's data_dir (src `webhooks: true`,
#                     poll_interval 5s, reconcile_interval 6h,
#                     FERRY_LOG_LEVEL=info) through 10 poll rounds ("poll
#                     round done" in its log); then the same with
#                     `webhooks: false` (every tag HEADed every round)
#   6. verify         `ferry verify -c CONFIG` (exit 0: dst holds everything)
#   7. journal        `ferry journal -c CONFIG stats`
# 1-4 and 6 are timed with GNU time (wall, user+sys, peak RSS); requests are
# the lines the registries' access logs gained (lib.sh's probes left out).
# A serve's requests per round: the source's access log is cut at each
# round's first catalog page (GET /v2/_catalog without last=), which is the
# first request of a round; its CPU per round: /proc/PID/stat ticks read
# when each "poll round done" line appears (round 1 from the process start);
# its peak RSS: VmHWM in /proc/PID/status after round 10.
#
# Environment:
#   BENCH_SCALE_SIZES="1000 10000 100000"  tags per size (multiples of 10)
#   BENCH_SCALE_SKOPEO_MAX=100000  run skopeo only at sizes up to this ("not run" above)
#   BENCH_RUNS=3                   runs per size; figures are medians, each run listed
#   BENCH_SCALE_RUNS="3 3 1"       runs of each size, in BENCH_SCALE_SIZES' order (default:
#                                  BENCH_RUNS each); a size run fewer than 3 times is
#                                  reported as such (its figures are single measurements)
#   BENCH_SCALE_ROUNDS=10          serve poll rounds per serve run (at least 2)
#   BENCH_SCALE_POLL=5             serve poll_interval, seconds
#                                  (a serve is allowed 120 s + ROUNDS x (POLL + SIZE / 100) s)
#   BENCH_TIMEOUT                  seconds allowed per ferry run (default 600 + SIZE / 20)
#   BENCH_SKOPEO_TIMEOUT           seconds allowed per skopeo run (default 600 + SIZE / 5)
#   BENCH_README=FILE              write the block between FILE's bench:scale markers
#                                  (./build.sh bench: README.md); needs 3 runs of the
#                                  smallest size at least
#   BENCH_OUT=FILE                 Markdown report (default build/bench/scale.md)
#   FERRY_BIN                      ferry binary (default build/ferry; a copy is run)
#   KEEP_TMP=1                     keep the storage, logs and data_dirs (build/bench/itest.*)
#
# Exit status: 0 when every run succeeded and dst verified (targets missed or
# not: PASS/MISS in the report); 1 when a run failed or timed out, or dst
# did not verify: at once, with no report and no README block.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
bench_root="${FERRY_BUILD_DIR:-$top/build}/bench"
mkdir -p "$bench_root"
export FERRY_BUILD_DIR="$bench_root"
export FERRY_SOURCE_DIR="$top"
# Distribution at warn: its access log stays (one line per request), its
# "response completed" lines go, which halves the logs at 100,000 tags.
export ITEST_REGISTRY_LOG_LEVEL=${ITEST_REGISTRY_LOG_LEVEL:-warn}
# shellcheck source=SCRIPTDIR/../integration/lib.sh
source "$top/tests/integration/lib.sh"
# shellcheck source=SCRIPTDIR/benchlib.sh
source "$top/tests/bench/benchlib.sh"

SIZES=${BENCH_SCALE_SIZES:-1000 10000 100000}
SKOPEO_MAX=${BENCH_SCALE_SKOPEO_MAX:-100000}
RUNS=${BENCH_RUNS:-3}
ROUNDS=${BENCH_SCALE_ROUNDS:-10}
POLL=${BENCH_SCALE_POLL:-5}
OUT=${BENCH_OUT:-$bench_root/scale.md}
TAGS_PER_REPO=10
IMAGES=1000
LAYERS=4
CATALOG_PAGE=1000 # Ferry asks n=1000 (REGISTRY_DEFAULT_LIST_PAGE_SIZE); Distribution's maxentries is 1000
for v in SKOPEO_MAX RUNS ROUNDS POLL; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a number, got '${!v}'"
done
((RUNS >= 1)) || fail "BENCH_RUNS must be at least 1"
((ROUNDS >= 2)) || fail "BENCH_SCALE_ROUNDS must be at least 2 (round 1 is reported apart)"
((POLL >= 1)) || fail "BENCH_SCALE_POLL must be at least 1"
read -r -a SIZE_LIST <<<"$SIZES"
((${#SIZE_LIST[@]})) || fail "BENCH_SCALE_SIZES names no size"
for n in "${SIZE_LIST[@]}"; do
  if [[ ! "$n" =~ ^[1-9][0-9]*$ ]] || ((n % TAGS_PER_REPO != 0)); then
    fail "BENCH_SCALE_SIZES: '$n' is not a positive multiple of $TAGS_PER_REPO"
  fi
done
for v in BENCH_TIMEOUT BENCH_SKOPEO_TIMEOUT; do
  [[ -z "${!v:-}" || "${!v}" =~ ^[1-9][0-9]*$ ]] || fail "$v must be a positive integer"
done
# Runs of each size: BENCH_SCALE_RUNS, in the sizes' order, or RUNS each.
declare -A RUNS_OF=()
read -r -a runs_list <<<"${BENCH_SCALE_RUNS:-}"
if ((${#runs_list[@]})); then
  ((${#runs_list[@]} == ${#SIZE_LIST[@]})) ||
    fail "BENCH_SCALE_RUNS names ${#runs_list[@]} run counts for ${#SIZE_LIST[@]} sizes"
fi
for i in "${!SIZE_LIST[@]}"; do
  r=${runs_list[$i]:-$RUNS}
  [[ "$r" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_SCALE_RUNS: '$r' is not a positive number"
  RUNS_OF[${SIZE_LIST[$i]}]=$r
done
# The README's figures are medians: its smallest size at least is run 3 times
# (a larger one run fewer times says so in its heading and its targets).
bench_readme_check scale "${RUNS_OF[${SIZE_LIST[0]}]}"

require_ferry
# A snapshot: a rebuild of build/ferry during the bench must not mix binaries.
# Exported so that lib.sh's ferry_serve_start runs it too.
FERRY="$TEST_TMP/ferry"
cp "$(ferry_bin)" "$FERRY"
export FERRY_BIN="$FERRY"
FERRY_SHA=$(sha256sum "$FERRY" | cut -c1-12)
for tool in skopeo jq python3 docker-registry timeout /usr/bin/time; do
  command -v "$tool" >/dev/null || fail "bench needs $tool"
done

# Targets.
T_RSS_MIB=64  # peak RSS of every sync and serve, MiB, at every size
T_HOOK_TAGS=0.01 # webhooks rounds 2..: at most catalog pages + repositories + this share of tags
T_NOOP=10     # skopeo no-op wall / ferry no-op (same node) wall >=
T_NEWNODE=3   # skopeo no-op wall / ferry no-op (new node) wall >=

bench_start=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------ python helper
# logstats (one run's requests by kind), rounds (a serve's requests per poll round).
TOOL="$TEST_TMP/scaletool.py"
cat >"$TOOL" <<'PY'
import argparse, json, re, statistics, sys

LINE = re.compile(r'^\S+ - \S+ \[[^\]]+\] "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"$')
KINDS = ("requests", "catalog", "tags_list", "manifest_head", "manifest_get", "manifest_put",
         "blob_head", "blob_get", "uploads", "other", "not_found", "errors_5xx")


def kind(method, path):
    if path == "/v2/_catalog":
        return "catalog" if method == "GET" else "other"
    if path.endswith("/tags/list"):
        return "tags_list" if method == "GET" else "other"
    if "/blobs/uploads/" in path or path.endswith("/blobs/uploads"):
        return "uploads"
    if "/manifests/" in path:
        return {"HEAD": "manifest_head", "GET": "manifest_get", "PUT": "manifest_put"}.get(method, "other")
    if "/blobs/" in path:
        return {"HEAD": "blob_head", "GET": "blob_get"}.get(method, "other")
    return "other"


def requests(path, offset):
    """(method, uri, path, status) of every request past line `offset`, probes left out."""
    with open(path, errors="replace") as f:
        for n, line in enumerate(f):
            if n < offset:
                continue
            m = LINE.match(line.rstrip("\n"))
            if not m or m.group(5) == "ferry-itest-probe":
                continue
            uri = m.group(2)
            yield m.group(1), uri, uri.split("?", 1)[0], int(m.group(3))


def empty():
    return {k: 0 for k in KINDS}


def count(c, method, path, status):
    c["requests"] += 1
    c[kind(method, path)] += 1
    if status == 404:
        c["not_found"] += 1
    if status >= 500:
        c["errors_5xx"] += 1


def cmd_logstats(a):
    c = empty()
    for method, _, path, status in requests(a.log, a.offset):
        count(c, method, path, status)
    json.dump(c, sys.stdout)
    sys.stdout.write("\n")


def cmd_rounds(a):
    # A round starts with its catalog's first page: GET /v2/_catalog without last=.
    rounds, before, after = [], empty(), 0
    for method, uri, path, status in requests(a.log, a.offset):
        if method == "GET" and path == "/v2/_catalog" and "last=" not in uri:
            rounds.append(empty())
        if len(rounds) > a.rounds:
            after += 1
            continue
        count(rounds[-1] if rounds else before, method, path, status)
    while len(rounds) < a.rounds:
        rounds.append(None)
    rest = [r for r in rounds[1:] if r is not None]
    out = {"rounds": rounds, "before": before["requests"], "after": after,
           "rest_median": {k: statistics.median([r[k] for r in rest]) if rest else None for k in KINDS},
           "rest_max": {k: max([r[k] for r in rest]) if rest else None for k in KINDS}}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def main():
    p = argparse.ArgumentParser(prog="scaletool.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("logstats")
    s.add_argument("--log", required=True)
    s.add_argument("--offset", type=int, default=0)
    s = sub.add_parser("rounds")
    s.add_argument("--log", required=True)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--rounds", type=int, required=True)
    a = p.parse_args()
    {"logstats": cmd_logstats, "rounds": cmd_rounds}[a.cmd](a)


if __name__ == "__main__":
    main()
PY
tool() { python3 "$TOOL" "$@"; }
measure_stats() { # REG OFFSET : logstats JSON of REG's requests past line OFFSET (benchlib's measure)
  tool logstats --log "${_REG_LOG[$1]}" --offset "$2"
}

# ------------------------------------------------------------------ helpers

declare -A V=()     # V[SIZE,metric] = "run1 run2 ..." (numbers)
declare -A DETAIL=() # DETAIL[SIZE,what] = text for the report's details
put() { V[$1,$2]+="$3 "; } # SIZE METRIC VALUE
med() { median "${V[$1,$2]:-}"; } # SIZE METRIC -> median of the runs
runs_note() { # SIZE -> " (1 run: ...)" for a size run fewer than 3 times, else ""
  ((RUNS_OF[$1] >= 3)) && return 0
  printf ' (%s run(s) only: not the median of 3)' "${RUNS_OF[$1]}"
}
runs_of() { # SIZE METRIC FORMAT -> "a / b / c"
  awk -v f="$3" '{ for (i = 1; i <= NF; i++) printf (i > 1 ? " / " : "") f, $i; print "" }' <<<"${V[$1,$2]:-}"
}
num() { # 12345 -> 12,345; 2.5 -> 2.5
  awk -v v="$1" 'BEGIN {
    if (v != int(v)) { printf "%.1f\n", v; exit }
    v = sprintf("%d", v); s = ""; sign = ""
    if (substr(v, 1, 1) == "-") { sign = "-"; v = substr(v, 2) }
    while (length(v) > 3) { s = "," substr(v, length(v) - 2) s; v = substr(v, 1, length(v) - 3) }
    print sign v s }'
}

# ferry_config FILE DATA_DIR [WEBHOOKS] : src -> dst, one rule ["**"]; with
# WEBHOOKS (true/false) a serve config (poll_interval, reconcile_interval),
# else a sync config (poll_interval 0)
ferry_config() {
  local file=$1 data=$2 wh=${3:-}
  {
    echo "data_dir: $data"
    echo "listen: 127.0.0.1:$(free_port)"
    if [[ -n "$wh" ]]; then
      echo "poll_interval: ${POLL}s"
      echo "reconcile_interval: 6h"
    else
      echo "poll_interval: 0"
    fi
    echo "registries:"
    echo "  src: { url: \"http://$src_ADDR\"${wh:+, webhooks: $wh} }"
    echo "  dst: { url: \"http://$dst_ADDR\" }"
    echo "rules:"
    echo "  - name: scale"
    echo "    source: src"
    echo "    repositories: [\"**\"]"
    echo "    destinations: [{ registry: dst }]"
  } >"$file"
}

# record SIZE STEP : the figures of the measure just made
record() {
  local n=$1 s=$2
  put "$n" "$s.wall" "$M_WALL"
  put "$n" "$s.cpu" "$(calc "$M_USER + $M_SYS")"
  put "$n" "$s.rss" "$(calc "$M_RSS / 1024")"
  put "$n" "$s.src" "$(st src requests)"
  put "$n" "$s.dst" "$(st dst requests)"
  put "$n" "$s.regcpu" "$M_REGCPU"
  DETAIL[$n,$s]+="run: src $(jq -c 'with_entries(select(.value != 0))' <<<"${M_STATS[src]}"), dst $(jq -c 'with_entries(select(.value != 0))' <<<"${M_STATS[dst]}")"$'\n'
  say "$(printf '%7s tags  %-13s wall %8.2f s  cpu %8.2f s  rss %6.1f MiB  registries cpu %8.2f s  requests: src %d, dst %d' \
    "$n" "$s" "$M_WALL" "$(calc "$M_USER + $M_SYS")" "$(calc "$M_RSS / 1024")" "$M_REGCPU" \
    "$(st src requests)" "$(st dst requests)")"
}

# fresh_dst : (re)start dst on empty storage; the previous log is kept as dst.log.N
DST_GEN=0
fresh_dst() {
  if [[ -n "${_ITEST_PIDS[registry:dst]:-}" ]]; then
    registry_stop dst
    DST_GEN=$((DST_GEN + 1))
    mv "$TEST_TMP/dst.log" "$TEST_TMP/dst.log.$DST_GEN"
    rm -rf "${TEST_TMP:?}/dst"
  fi
  registry_start dst
}

# area_close SIZE : stop both registries; their storage and logs go to
# s<SIZE>/ with KEEP_TMP=1, else away (100,000 tags take ~2 GB of small files)
area_close() {
  local n=$1 f
  registry_stop src
  registry_stop dst
  for f in "$TEST_TMP"/src "$TEST_TMP"/dst "$TEST_TMP"/src.* "$TEST_TMP"/dst.*; do
    [[ -e "$f" ]] || continue
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then mv "$f" "$TEST_TMP/s$n/"; else rm -rf "$f"; fi
  done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then
    rm -rf "$TEST_TMP/s$n"/run*/data "$TEST_TMP/s$n"/run*/data-new
  fi
  DST_GEN=0
}

# serve_run SIZE RUN MODE WEBHOOKS : `ferry serve` on the run's data_dir
# through ROUNDS poll rounds; records MODE.* figures
serve_run() {
  local n=$1 run=$2 mode=$3 wh=$4
  local dir="$TEST_TMP/s$n/run$run" name="serve_${mode}_${n}_$run"
  local cfg="$dir/serve-$mode.yaml" log="$TEST_TMP/serve_${mode}_${n}_$run.log"
  ferry_config "$cfg" "$dir/data" "$wh"
  local port
  port=$(sed -n 's/^listen: 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$cfg")
  local s0 d0
  s0=$(log_lines src)
  d0=$(log_lines dst)
  local t0=$EPOCHREALTIME
  local limit=$((120 + ROUNDS * (POLL + n / 100))) # s; measured: ~0.004 s per tag HEADed
  FERRY_LOG_LEVEL=info ferry_serve_start "$name" "$cfg" "$port"
  local pidv="${name}_PID"
  local pid=${!pidv}
  local -a ticks=(0)
  local seen=0 k
  while ((seen < ROUNDS)); do
    k=$(grep -c 'poll round done' "$log" || true)
    while ((seen < k && seen < ROUNDS)); do
      seen=$((seen + 1))
      ticks[seen]=$(cpu_ticks "$pid")
    done
    ((seen < ROUNDS)) || break
    _itest_alive "$pid" || fail "$name: ferry serve exited after $seen poll rounds: $(tail -n 5 "$log")"
    if ! ge "$limit" "$(calc "$EPOCHREALTIME - $t0")"; then
      fail "$name: only $seen of $ROUNDS poll rounds in $limit s"
    fi
    sleep 0.1
  done
  local wall rss
  wall=$(calc "$EPOCHREALTIME - $t0")
  rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  stop_bg "$name"
  log_lines src >/dev/null
  log_lines dst >/dev/null
  local rj dj cpus="" i
  rj=$(tool rounds --log "$src_LOG" --offset "$s0" --rounds "$ROUNDS")
  dj=$(tool logstats --log "$dst_LOG" --offset "$d0")
  for ((i = 1; i <= ROUNDS; i++)); do
    cpus+="$(calc "(${ticks[i]} - ${ticks[i - 1]}) / $CLK_TCK") "
  done
  jq -e '.rounds | all(. != null)' <<<"$rj" >/dev/null ||
    fail "$name: the source's log shows fewer than $ROUNDS rounds (catalog first pages): $(jq -c . <<<"$rj")"
  put "$n" "$mode.rss" "$(calc "$rss / 1024")"
  put "$n" "$mode.wall" "$wall"
  put "$n" "$mode.dst" "$(jq .requests <<<"$dj")"
  local f
  for f in requests catalog tags_list manifest_head; do
    put "$n" "$mode.r1.$f" "$(jq ".rounds[0].$f" <<<"$rj")"
    put "$n" "$mode.rest.$f" "$(jq ".rest_median.$f" <<<"$rj")"
  done
  put "$n" "$mode.r1.other" "$(jq '.rounds[0] | .requests - .catalog - .tags_list - .manifest_head' <<<"$rj")"
  put "$n" "$mode.rest.other" "$(jq '[.rounds[1:][] | .requests - .catalog - .tags_list - .manifest_head] | sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end' <<<"$rj")"
  put "$n" "$mode.rest.max" "$(jq .rest_max.requests <<<"$rj")"
  put "$n" "$mode.r1.cpu" "${cpus%% *}"
  put "$n" "$mode.rest.cpu" "$(median "${cpus#* }")"
  DETAIL[$n,$mode]+="run $run: per round, source requests (catalog / tags/list / HEAD manifests): $(jq -r '[.rounds[] | "\(.requests) (\(.catalog)/\(.tags_list)/\(.manifest_head))"] | join(", ")' <<<"$rj"); ferry CPU s: $(awk '{ for (i = 1; i <= NF; i++) printf (i > 1 ? ", " : "") "%.2f", $i; print "" }' <<<"$cpus"); $(jq .before <<<"$rj") requests before round 1, $(jq .after <<<"$rj") after round $ROUNDS; destination: $(jq -c 'with_entries(select(.value != 0))' <<<"$dj"); $ROUNDS rounds in $(fmt '%.1f' "$wall") s"$'\n'
  local odd
  odd=$(grep -vE '^ferry: serving on | info poll round |warn stopping signal=TERM: draining accepted events$|^$' "$log" |
    head -n 10 || true)
  [[ -z "$odd" ]] || DETAIL[$n,$mode.log]+="run $run:"$'\n'"$odd"$'\n'
  say "$(printf '%7s tags  serve %-8s round 1: %d requests (%d HEAD), %.2f s CPU; rounds 2-%d: median %s requests (%s HEAD, max %s), %.2f s CPU; rss %.1f MiB; dst %d requests' \
    "$n" "$mode" "$(jq .rounds[0].requests <<<"$rj")" "$(jq .rounds[0].manifest_head <<<"$rj")" "${cpus%% *}" \
    "$ROUNDS" "$(jq .rest_median.requests <<<"$rj")" "$(jq .rest_median.manifest_head <<<"$rj")" \
    "$(jq .rest_max.requests <<<"$rj")" "$(median "${cpus#* }")" "$(calc "$rss / 1024")" "$(jq .requests <<<"$dj")")"
}

# ------------------------------------------------------------------- sizes

for n in "${SIZE_LIST[@]}"; do
  repos=$((n / TAGS_PER_REPO))
  TIMEOUT=${BENCH_TIMEOUT:-$((600 + n / 20))}
  SKOPEO_TIMEOUT=${BENCH_SKOPEO_TIMEOUT:-$((600 + n / 5))}
  FERRY_TIMEOUT=$TIMEOUT
  mkdir -p "$TEST_TMP/s$n"
  say "---- $n tags: $repos repositories x $TAGS_PER_REPO tags, $IMAGES images"
  t0=$EPOCHREALTIME
  gen=$(python3 "$top/tests/bench/scalegen.py" "$TEST_TMP/src" "$repos" "$TAGS_PER_REPO" "$IMAGES" "$LAYERS") ||
    fail "scalegen.py failed"
  DETAIL[$n,gen]="$gen, in $(fmt '%.1f' "$(calc "$EPOCHREALTIME - $t0")") s"
  say "$gen"
  registry_start src
  last=$((repos - 1))
  width=${#last} # scalegen's names: scale/r0 ... scale/r9, scale/r00 ... scale/r99, ...
  listed=$(curl -sf "$src_URL/v2/scale/r$(printf "%0${width}d" 0)/tags/list" | jq '.tags | length') ||
    fail "the source does not list scale/r0's tags"
  ((listed == TAGS_PER_REPO)) || fail "the source lists $listed tags in its first repository, not $TAGS_PER_REPO"

  # skopeo's source: every repository, all tags; the destination is DST/scale
  # (skopeo sync keeps only the last element of a repository's name)
  yaml="$TEST_TMP/s$n/skopeo-src.yaml"
  {
    echo "$src_ADDR:"
    echo "  tls-verify: false"
    echo "  images:"
    for ((r = 0; r < repos; r++)); do printf '    scale/r%0*d: []\n' "$width" "$r"; done
  } >"$yaml"

  for ((run = 1; run <= RUNS_OF[$n]; run++)); do
    ((RUNS_OF[$n] > 1)) && say "---- $n tags: run $run of ${RUNS_OF[$n]}"
    dir="$TEST_TMP/s$n/run$run"
    mkdir -p "$dir"
    fresh_dst
    TIMEOUT=$FERRY_TIMEOUT
    ferry_config "$dir/sync.yaml" "$dir/data"
    measure "s$n-r$run-sync-fresh" "src dst" "$FERRY" sync -c "$dir/sync.yaml"
    record "$n" fresh
    measure "s$n-r$run-sync-noop" "src dst" "$FERRY" sync -c "$dir/sync.yaml"
    record "$n" noop
    ferry_config "$dir/sync-new.yaml" "$dir/data-new"
    measure "s$n-r$run-sync-new" "src dst" "$FERRY" sync -c "$dir/sync-new.yaml"
    record "$n" new
    DETAIL[$n,summary]+="run $run: fresh: $(grep -h '^sync complete' "$TEST_TMP/s$n-r$run-sync-fresh.out" || echo '?'); no-op: $(grep -h '^sync complete' "$TEST_TMP/s$n-r$run-sync-noop.out" || echo '?'); new node: $(grep -h '^sync complete' "$TEST_TMP/s$n-r$run-sync-new.out" || echo '?')"$'\n'
    for s in fresh noop new; do
      other=$(grep -vE '^complete |^sync complete|^$' "$TEST_TMP/s$n-r$run-sync-$s.err" | head -n 10 || true)
      [[ -z "$other" ]] || DETAIL[$n,synclog]+="run $run, $s:"$'\n'"$other"$'\n'
    done
    if ((n <= SKOPEO_MAX)); then
      TIMEOUT=$SKOPEO_TIMEOUT
      skopeo_cache_clear
      measure "s$n-r$run-skopeo" "src dst" skopeo sync --all --src yaml --dest docker --src-tls-verify=false \
        --dest-tls-verify=false --preserve-digests "$yaml" "$dst_ADDR/scale"
      record "$n" skopeo
      put "$n" skopeo.uploads "$(st dst uploads)"
      put "$n" skopeo.manifest_put "$(st dst manifest_put)"
      TIMEOUT=$FERRY_TIMEOUT
    fi
    serve_run "$n" "$run" hooks true
    serve_run "$n" "$run" poll false
    measure "s$n-r$run-verify" "src dst" "$FERRY" verify -c "$dir/sync.yaml"
    record "$n" verify
    "$FERRY" journal -c "$dir/sync.yaml" stats >"$dir/journal-stats.txt" 2>&1 ||
      fail "ferry journal stats failed: $(cat "$dir/journal-stats.txt")"
    for f in entries table_bytes wal_bytes bytes_per_entry; do
      put "$n" "journal.$f" "$(awk -v k="$f" '$1 == k { print $2 }' "$dir/journal-stats.txt")"
    done
    say "$(printf '%7s tags  journal: %s' "$n" "$(tr '\n' ' ' <"$dir/journal-stats.txt")")"
  done
  area_close "$n"
done

# ------------------------------------------------------------------ report

misses=0
verdict() { # VERDICT TEXT : a target line
  [[ $1 == MISS ]] && misses=$((misses + 1))
  echo "- $2: **$1**"
}
mib() { fmt '%.1f' "$1"; }
sec() { fmt '%.2f' "$1"; }
# skopeo no-op ÷ ferry STEP, or "" when skopeo did not run
vs_skopeo() { [[ -n "${V[$1,skopeo.wall]:-}" ]] && calc "$(med "$1" skopeo.wall) / $(med "$1" "$2.wall")"; }

size_table() { # SIZE
  local n=$1 repos=$(($1 / TAGS_PER_REPO)) s label
  echo "### $(num "$n") tags ($(num "$repos") repositories × $TAGS_PER_REPO tags)$(runs_note "$n")"
  echo
  echo "| run | wall s | CPU s | peak RSS MiB | requests to the source | requests to the destination | wall s, each run |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for s in fresh noop new skopeo verify; do
    case $s in
      fresh) label="\`ferry sync\`, fresh (empty destination, empty data_dir)" ;;
      noop) label="\`ferry sync\` no-op, same node" ;;
      new) label="\`ferry sync\` no-op, new node (fresh data_dir)" ;;
      skopeo) label="\`skopeo sync\` no-op" ;;
      verify) label="\`ferry verify\`" ;;
    esac
    if [[ -z "${V[$n,$s.wall]:-}" ]]; then
      echo "| $label | not run (size > BENCH_SCALE_SKOPEO_MAX=$SKOPEO_MAX) | | | | | |"
      continue
    fi
    echo "| $label | $(sec "$(med "$n" "$s.wall")") | $(sec "$(med "$n" "$s.cpu")") | $(mib "$(med "$n" "$s.rss")") | $(num "$(med "$n" "$s.src")") | $(num "$(med "$n" "$s.dst")") | $(runs_of "$n" "$s.wall" '%.2f') |"
  done
  echo
  if [[ -n "${V[$n,skopeo.wall]:-}" ]]; then
    echo "skopeo's no-op ÷ Ferry's: same node **$(fmt '%.1f' "$(vs_skopeo "$n" noop)")×**, new node **$(fmt '%.1f' "$(vs_skopeo "$n" new)")×** (skopeo uploaded $(num "$(med "$n" skopeo.uploads)") blobs and PUT $(num "$(med "$n" skopeo.manifest_put)") manifests again)."
  else
    echo "skopeo's no-op: not run at this size."
  fi
  echo
  echo "\`ferry serve\`, $ROUNDS poll rounds ${POLL} s apart, source requests and Ferry's CPU per round (round 1 sweeps every tag, and its CPU includes the start; rounds 2–$ROUNDS: median):"
  echo
  echo "| | \`webhooks: true\`, round 1 | \`webhooks: true\`, rounds 2–$ROUNDS | \`webhooks: false\`, round 1 | \`webhooks: false\`, rounds 2–$ROUNDS |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  local f fl
  for f in requests catalog tags_list manifest_head other cpu; do
    case $f in
      requests) fl="requests to the source" ;;
      catalog) fl="GET _catalog (pages of $CATALOG_PAGE)" ;;
      tags_list) fl="GET tags/list" ;;
      manifest_head) fl="HEAD manifests" ;;
      other) fl="other requests" ;;
      cpu) fl="Ferry CPU s" ;;
    esac
    if [[ $f == cpu ]]; then
      echo "| $fl | $(sec "$(med "$n" hooks.r1.cpu)") | $(sec "$(med "$n" hooks.rest.cpu)") | $(sec "$(med "$n" poll.r1.cpu)") | $(sec "$(med "$n" poll.rest.cpu)") |"
    else
      echo "| $fl | $(num "$(med "$n" "hooks.r1.$f")") | $(num "$(med "$n" "hooks.rest.$f")") | $(num "$(med "$n" "poll.r1.$f")") | $(num "$(med "$n" "poll.rest.$f")") |"
    fi
  done
  echo "| most requests in one round of 2–$ROUNDS | | $(num "$(med "$n" hooks.rest.max)") | | $(num "$(med "$n" poll.rest.max)") |"
  echo "| requests to the destination, all rounds | $(num "$(med "$n" hooks.dst)") | | $(num "$(med "$n" poll.dst)") | |"
  echo "| peak RSS MiB (VmHWM after round $ROUNDS) | $(mib "$(med "$n" hooks.rss)") | | $(mib "$(med "$n" poll.rss)") | |"
  echo
  echo "Journal (\`ferry journal stats\` after the runs): $(num "$(med "$n" journal.entries)") entries, $(num "$(med "$n" journal.bytes_per_entry)") bytes per entry, WAL $(MiB "$(med "$n" journal.wal_bytes)") MiB, tables $(MiB "$(med "$n" journal.table_bytes)") MiB."
}

rss_table() {
  echo "### Peak RSS against tags (MiB)"
  echo
  echo "| tags | repositories | \`ferry sync\` fresh | \`ferry sync\` no-op, same node | \`ferry sync\` no-op, new node | \`ferry serve\`, \`webhooks: true\` | \`ferry serve\`, \`webhooks: false\` | \`ferry verify\` |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local n
  for n in "${SIZE_LIST[@]}"; do
    echo "| $(num "$n") | $(num $((n / TAGS_PER_REPO))) | $(mib "$(med "$n" fresh.rss)") | $(mib "$(med "$n" noop.rss)") | $(mib "$(med "$n" new.rss)") | $(mib "$(med "$n" hooks.rss)") | $(mib "$(med "$n" poll.rss)") | $(mib "$(med "$n" verify.rss)") |"
  done
}

targets=$(
  for n in "${SIZE_LIST[@]}"; do
    repos=$((n / TAGS_PER_REPO))
    lab="$(num "$n") tags"
    ((RUNS_OF[$n] >= 3)) || lab+=" (${RUNS_OF[$n]} run(s) only)"
    worst=0
    for s in fresh noop new hooks poll; do
      m=$(med "$n" "$s.rss")
      ge "$worst" "$m" || worst=$m
    done
    verdict "$(verdict_le "$worst" "$T_RSS_MIB")" "$lab: peak RSS of every \`ferry sync\` and \`ferry serve\` ≤ $T_RSS_MIB MiB (largest $(mib "$worst") MiB)"
    pages=$(((repos + CATALOG_PAGE - 1) / CATALOG_PAGE))
    bound=$(calc "$pages + $repos + $T_HOOK_TAGS * $n")
    hmax=$(med "$n" hooks.rest.max)
    verdict "$(verdict_le "$hmax" "$bound")" "$lab: \`webhooks: true\` rounds 2–$ROUNDS send O(repositories): ≤ $pages catalog page(s) + $(num "$repos") repositories + $(fmt '%g' "$(calc "$T_HOOK_TAGS * 100")") % of tags = $(num "$bound") requests per round (most: $(num "$hmax"); median HEADs $(num "$(med "$n" hooks.rest.manifest_head)"))"
    if [[ -n "${V[$n,skopeo.wall]:-}" ]]; then
      sp=$(vs_skopeo "$n" noop)
      verdict "$(verdict_ge "$sp" "$T_NOOP")" "$lab: no-op, same node ≥ ${T_NOOP}× faster than skopeo's no-op ($(fmt '%.1f' "$sp")×)"
      sp=$(vs_skopeo "$n" new)
      verdict "$(verdict_ge "$sp" "$T_NEWNODE")" "$lab: no-op, new node ≥ ${T_NEWNODE}× faster than skopeo's no-op ($(fmt '%.1f' "$sp")×)"
    else
      echo "- $lab: no-op against skopeo (same node ≥ ${T_NOOP}×, new node ≥ ${T_NEWNODE}×): not run"
    fi
  done
)
misses=$(grep -c '\*\*MISS\*\*' <<<"$targets" || true)

elapsed=$(calc "$EPOCHREALTIME - $bench_start" | xargs printf '%.0f')
sizes_text=$(for n in "${SIZE_LIST[@]}"; do num "$n"; done | paste -sd/ | sed 's|/| / |g')
header=$(
  echo "## scale: Ferry at $sizes_text tags"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, ferry $(bench_commit) (binary sha256 $FERRY_SHA…), $(skopeo --version), Distribution $(docker-registry --version 2>/dev/null | awk '{print $NF}'), bench took ${elapsed} s; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (the machine may be shared)."
  echo
  echo "- **The source**: $TAGS_PER_REPO tags per repository (\`scale/r…\`, tags \`t0\` … \`t9\`) over $(num "$IMAGES") distinct single-platform OCI images (each its own config blob over one of $LAYERS small layers), written straight into the source registry's storage by \`tests/bench/scalegen.py\`; one destination registry."
  echo "- **\`ferry sync\`**: one rule \`repositories: [\"**\"]\` src → dst; fresh = an empty destination and an empty \`data_dir\`; no-op, same node = the same again (its journal knows every tag, and it still HEADs each at the source: a sync's poll round sweeps); no-op, new node = a fresh \`data_dir\` against the full destination (every tag HEADed at both ends)."
  echo "- **\`skopeo sync\` no-op**: \`skopeo sync --all --src yaml --dest docker --src-tls-verify=false --dest-tls-verify=false --preserve-digests SRC.yaml DST/scale\` against the full destination, the YAML listing every repository with all tags, its blob-info cache ($SKOPEO_CACHE) deleted first (it copies no blob here, so the cache could only have spared it blob checks)."
  echo "- **\`ferry serve\`** on the fresh sync's \`data_dir\` with \`poll_interval: ${POLL}s\`, \`reconcile_interval: 6h\`, first with \`webhooks: true\` on the source (a round lists every repository and HEADs only tags the journal does not know; each repository is swept once per reconcile_interval; the first round sweeps everything), then with \`webhooks: false\` (every tag HEADed every round). No notification is sent: this is the cost of the polling alone."
  echo "- Wall, CPU (user+sys) and peak RSS from GNU time; a serve's RSS is VmHWM after its last round. Requests = lines the registries' access logs gained. \`ferry verify\` exited 0 after every run (the destination held every tag, child and blob)."
  echo "- Runs per size: $(for n in "${SIZE_LIST[@]}"; do echo "${RUNS_OF[$n]} at $(num "$n")"; done | paste -sd";" | sed "s/;/; /g"); figures are **medians** of a size's runs (ratios are of medians), each run's wall is listed."
)
report=$(
  for n in "${SIZE_LIST[@]}"; do
    size_table "$n"
    echo
  done
  rss_table
  echo
  echo "### targets"
  echo
  echo "$targets"
)
details=$(
  echo "### details"
  for n in "${SIZE_LIST[@]}"; do
    echo
    echo "#### $(num "$n") tags"
    echo
    echo '```'
    echo "${DETAIL[$n,gen]}"
    for k in summary fresh noop new skopeo verify hooks poll synclog hooks.log poll.log; do
      [[ -n "${DETAIL[$n,$k]:-}" ]] || continue
      echo "# $k"
      printf '%s' "${DETAIL[$n,$k]}"
    done
    for m in fresh.wall fresh.cpu fresh.rss noop.wall noop.rss new.wall new.rss skopeo.wall skopeo.cpu skopeo.rss \
      verify.wall verify.rss hooks.rss hooks.r1.requests hooks.rest.requests hooks.rest.max hooks.r1.cpu hooks.rest.cpu \
      poll.rss poll.r1.requests poll.rest.requests poll.rest.max poll.r1.cpu poll.rest.cpu journal.entries journal.bytes_per_entry journal.wal_bytes; do
      [[ -n "${V[$n,$m]:-}" ]] && echo "$m, each run: $(runs_of "$n" "$m" '%g')"
    done
    echo '```'
  done
)

mkdir -p "$(dirname "$OUT")"
printf '%s\n\n%s\n\n%s\n' "$header" "$report" "$details" >"$OUT"
echo
printf '%s\n\n%s\n' "$header" "$report"
echo "bench: report written to $OUT ($misses target(s) missed)"
# The README's block: the report without its title and details, one heading level down.
printf '%s\n\n%s\n' "$header" "$report" | sed -e '1,2d' -e 's/^### /#### /' >"$TEST_TMP/readme-block.md"
bench_readme_write scale "$TEST_TMP/readme-block.md"
