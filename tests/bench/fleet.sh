#!/usr/bin/env bash
# shellcheck disable=SC2154 # src_*, d1_* ... are set by lib.sh's registry_start
# Benchmark: fleet replication. `ferry sync` against `skopeo sync` (what a
# skopeo user runs: one destination after another, one image at a time) and
# against parallel `skopeo copy` processes (what a careful user scripts: one
# per image and destination, as many at once per destination as ferry runs
# jobs there), one source registry to one and to three destination
# registries, and push-to-replicated latency under `ferry serve`; all on
# loopback.
#
#   bash tests/bench/fleet.sh               (uses build/ferry, or $FERRY_BIN; 3 runs of everything)
#   BENCH_QUICK=1 BENCH_RUNS=1 bash tests/bench/fleet.sh   (8 repositories x 3 tags, 15 s of pushes)
#   BENCH_QUICK=1 BENCH_REPOS=3 BENCH_TAGS=3 BENCH_PUSH_SECONDS=3 BENCH_PUSH_RATE=5 \
#     bash tests/bench/fleet.sh             (a check of the bench itself)
#
# The fleet (pushed to a source registry, Distribution 2.8 from lib.sh, by
# fixturegen's own code: tests/fixtures/fixturegen.py imported as a module,
# with a Plan subclass for the layer layout, since the command line has one
# base-layer size and one own-layer seed per push):
#   BENCH_REPOS repositories (default 40, flat names fleet-00 ...) x BENCH_TAGS
#   tags (default 5, v1 ...); every image has, in this order,
#     3 fleet-wide base layers of 20, 8 and 3 MiB (the same blobs everywhere),
#     1 layer of 4 MiB per repository (the same in every tag of it),
#     1 layer of 512 KiB per tag (and per platform),
#   and every 5th tag is a 2-platform OCI index (linux/amd64, linux/arm64; both
#   platforms share the base and repository layers). Repositories are pushed
#   4 at a time (xargs -P 4), each one's tags in order.
# Unique bytes = the sum of the sizes of the distinct blob digests in
# fixturegen's JSON outputs (manifests not included).
#
# Scenarios, each into FRESH destination registries (stopped, storage removed,
# started again on a new port) and, for ferry, a fresh data_dir; skopeo's
# blob-info cache (benchlib.sh) is deleted before each skopeo run but the
# same-node no-op:
#   ferry sync  -> d1              config: one rule, repositories ["**"] -> d1
#   ferry sync  -> d1, d2, d3      one rule with three destinations, one run
#   skopeo sync -> d1              --src yaml (every repository, all tags), one run
#   skopeo sync -> d1, d2, d3      three runs, one per destination (summed)
#   skopeo copy x P -> d1 (d2, d3) one `skopeo copy --all --preserve-digests` per
#                                  image and destination, P at a time per
#                                  destination (xargs -P; the destinations' pools
#                                  at once), P = the destination's max_concurrency
#                                  in the config the bench gives ferry (ferry's
#                                  jobs in flight per destination)
#   no-op, same node: the 1-destination run again (ferry: same data_dir;
#                     skopeo: its cache as the run left it)
#   no-op, new node:  the same, from nothing (ferry: a fresh data_dir, so it
#                     re-checks every tag; skopeo: its cache deleted)
# The tools take turns at going first (ferry, skopeo sync, skopeo copy; then
# skopeo sync, skopeo copy, ferry; ...).
# Each run is timed with GNU time (wall, user+sys, peak RSS); from the access
# logs (combined log format) of every registry: requests, the bytes of the
# source's blob GET responses (200/206), and the blob uploads completed at each
# destination (PUT or POST with digest=, 201), whose bytes are the blob sizes
# known from fixturegen. Storage per destination = sum of the sizes of the
# `data` files under docker/registry/v2/blobs (blobs and manifests) after the
# run. After every run, every tag of every repository at every destination
# must list and answer HEAD with the source's digest, or the bench fails.
#
# Latency: a second source registry (src2) sends its notifications to a
# `ferry serve` with one rule to a fresh destination (lat). A python pusher
# (fixturegen's Registry client, BENCH_PUSHERS threads) pushes one small image
# (one 16 KiB layer, fresh tag) BENCH_PUSH_RATE times a second, open loop, for
# BENCH_PUSH_SECONDS; a watcher polls the destination's tags/list every 20 ms.
# Latency = first poll answer listing the tag - the pusher's manifest PUT
# answer.
#
# Environment:
#   BENCH_QUICK=1           8 repositories x 3 tags (every 3rd an index), 15 s of pushes
#   BENCH_REPOS, BENCH_TAGS fleet size (default 40 x 5)
#   BENCH_PUSH_RATE=20      pushes per second in the latency part
#   BENCH_PUSH_SECONDS=60   seconds of pushes
#   BENCH_PUSHERS=8         pusher threads
#   BENCH_SKIP_LATENCY=1    skip the latency part
#   BENCH_RUNS=3            repeat the sync scenarios N times; wall, CPU, RSS,
#                           registries' CPU and source requests/reads are the
#                           medians (each run is listed), other counts the last run's
#   BENCH_MAX_CONCURRENCY=N max_concurrency of every registry in ferry's config
#                           (default: unset, ferry's default); the parallel skopeo
#                           copy pools follow it
#   BENCH_VERIFY_HOOK=CMD   (testing the bench) bash run before each destination is
#                           verified, with REG (d1 ...), WHO (the run) and STORAGE
#                           (the registry's storage directory) exported
#   BENCH_README=FILE       write the report between FILE's bench:fleet markers
#                           (./build.sh bench: README.md), when everything verified;
#                           needs BENCH_RUNS >= 3
#   BENCH_TIMEOUT=600       seconds allowed per sync run
#   BENCH_OUT=FILE          Markdown report (default build/bench/fleet.md)
#   FERRY_BIN               ferry binary (default build/ferry)
#   KEEP_TMP=1              keep the registries' storage and logs (build/bench/itest.*)
#
# Exit status: 0 when every run succeeded and verified (targets missed or
# not), 1 when a run failed, timed out or left a destination incomplete: then
# at once, with the FAIL line and no figure, no report and no README block.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
bench_root="${FERRY_BUILD_DIR:-$top/build}/bench"
mkdir -p "$bench_root"
export FERRY_BUILD_DIR="$bench_root"
export FERRY_SOURCE_DIR="$top"
# shellcheck source=SCRIPTDIR/../integration/lib.sh
source "$top/tests/integration/lib.sh"
# shellcheck source=SCRIPTDIR/benchlib.sh
source "$top/tests/bench/benchlib.sh"
# shellcheck source=SCRIPTDIR/fleetlib.sh
source "$top/tests/bench/fleetlib.sh"

fleet_size_options
if [[ "$QUICK" == 1 ]]; then
  PUSH_SECONDS=${BENCH_PUSH_SECONDS:-15}
else
  PUSH_SECONDS=${BENCH_PUSH_SECONDS:-60}
fi
PUSH_RATE=${BENCH_PUSH_RATE:-20}
PUSHERS=${BENCH_PUSHERS:-8}
RUNS=${BENCH_RUNS:-3}
MAX_CONC=${BENCH_MAX_CONCURRENCY:-}
SKIP_LATENCY=${BENCH_SKIP_LATENCY:-0}
TIMEOUT=${BENCH_TIMEOUT:-600}
OUT=${BENCH_OUT:-$bench_root/fleet.md}
for v in PUSH_SECONDS PUSH_RATE PUSHERS TIMEOUT RUNS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_$v must be a positive integer, got '${!v}'"
done
[[ -z "$MAX_CONC" || "$MAX_CONC" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_MAX_CONCURRENCY must be a positive integer"
bench_readme_check fleet "$RUNS"
# ferry's jobs in flight per destination when its config says nothing
DEFAULT_CONC=$(sed -n 's/^#define CONFIG_DEFAULT_REGISTRY_CONCURRENCY  *\([0-9][0-9]*\).*/\1/p' "$top/replicator/config/config.h")
[[ -n "$DEFAULT_CONC" ]] || fail "no CONFIG_DEFAULT_REGISTRY_CONCURRENCY in replicator/config/config.h"

require_ferry
# A snapshot: a rebuild of build/ferry during the bench must not mix binaries.
# Exported so that lib.sh's ferry_serve_start runs it too.
FERRY="$TEST_TMP/ferry"
cp "$(ferry_bin)" "$FERRY"
export FERRY_BIN="$FERRY"
FERRY_SHA=$(sha256sum "$FERRY" | cut -c1-12)
for tool in skopeo curl jq python3 docker-registry timeout xargs /usr/bin/time; do
  command -v "$tool" >/dev/null || fail "bench needs $tool"
done

# Targets.
T_SPEED1=2.5    # 1 destination: skopeo wall / ferry wall >=
T_SPEED3=4      # 3 destinations: >=
T_SRC_READ=1.0  # ferry's source blob bytes read / unique bytes (within 0.5 %)
T_CPU=0.2       # ferry CPU / skopeo CPU <=
T_NOOP=10       # skopeo no-op wall / ferry no-op wall >=
T_P50_MS=300
T_P99_MS=1000

bench_start=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# say, calc, fmt, ratio, ge, verdict_ge, verdict_le: benchlib.sh

# ------------------------------------------------------------------ helpers

# cpu_ticks, median, log_lines: benchlib.sh

# stored_bytes, fresh_dst, verify_dst, tool: fleetlib.sh

# ferry_config FILE DATA_DIR DEST... : one rule, repositories ["**"], src -> DEST...
ferry_config() {
  local file=$1 data=$2 d
  shift 2
  rm -rf "$data" # every run starts from an empty data_dir (journal, spool, presence)
  {
    echo "data_dir: $data"
    echo "listen: 127.0.0.1:$(free_port)"
    echo "poll_interval: 0"
    echo "registries:"
    local conc=""
    [[ -z "$MAX_CONC" ]] || conc=", max_concurrency: $MAX_CONC"
    echo "  src: { url: \"http://$src_ADDR\"$conc }"
    for d in "$@"; do
      local addr_var="${d}_ADDR"
      echo "  $d: { url: \"http://${!addr_var}\"$conc }"
    done
    echo "rules:"
    echo "  - name: fleet"
    echo "    source: src"
    echo "    repositories: [\"**\"]"
    echo "    destinations:"
    for d in "$@"; do
      echo "      - { registry: $d }"
    done
  } >"$file"
}

# measure, st: benchlib.sh; M_STATS[REG] comes from measure_stats.
measure_stats() { # REG OFFSET : the logstats JSON of REG's requests past line OFFSET
  tool logstats --log "${_REG_LOG[$1]}" --offset "$2" "${FLEET_FILES[@]}"
}

# ------------------------------------------------------------------ the fleet

fleet_push

# -------------------------------------------------------------------- runs

declare -A R=() # R[scenario,tool,metric]

# record SCENARIO TOOL DESTS... : add this run's figures (sums; RSS max)
record() {
  local k="$1,$2" label="$1 $2" d
  shift 2
  R[$k,wall]=$(calc "${R[$k,wall]:-0} + $M_WALL")
  R[$k,cpu]=$(calc "${R[$k,cpu]:-0} + $M_USER + $M_SYS")
  R[$k,rss]=$(calc "(${R[$k,rss]:-0} > $M_RSS / 1024) ? ${R[$k,rss]:-0} : $M_RSS / 1024")
  R[$k,regcpu]=$(calc "${R[$k,regcpu]:-0} + $M_REGCPU")
  R[$k,runs]=$((${R[$k,runs]:-0} + 1))
  R[$k,src_req]=$((${R[$k,src_req]:-0} + $(st src requests)))
  R[$k,src_gets]=$((${R[$k,src_gets]:-0} + $(st src blob_gets)))
  R[$k,src_bytes]=$((${R[$k,src_bytes]:-0} + $(st src blob_get_bytes)))
  for d in "$@"; do
    [[ -n "${M_STATS[$d]:-}" ]] || continue
    R[$k,dst_req]+="$(st "$d" requests) "
    R[$k,uploads]+="$(st "$d" uploads) "
    R[$k,up_bytes]+="$(st "$d" upload_bytes) "
    R[$k,mounts]+="$(st "$d" mounts) "
    R[$k,dups]+="$(st "$d" dup_uploads) "
    R[$k,dup_bytes]+="$(st "$d" dup_upload_bytes) "
    R[$k,put4xx]+="$(st "$d" errors_4xx_put) "
    R[$k,manifest_puts]+="$(st "$d" manifest_puts) "
    if [[ "$(st "$d" unknown_uploads)" != 0 ]]; then
      note "$1 $2: $d got $(st "$d" unknown_uploads) uploads of blobs not in the fleet"
    fi
  done
  say "$(printf '%-12s wall %7.2f s  cpu %7.2f s  registries cpu %7.2f s  rss %6.1f MiB  src: %d req, %d blob GETs, %s MiB' \
    "$label" "$M_WALL" "$(calc "$M_USER + $M_SYS")" "$M_REGCPU" "$(calc "$M_RSS / 1024")" \
    "$(st src requests)" "$(st src blob_gets)" "$(MiB "$(st src blob_get_bytes)")")$(
    for d in "$@"; do
      [[ -n "${M_STATS[$d]:-}" ]] && printf '  %s: %d req, %d uploads (%s MiB), %d mounts' "$d" \
        "$(st "$d" requests)" "$(st "$d" uploads)" "$(MiB "$(st "$d" upload_bytes)")" "$(st "$d" mounts)"
    done)"
}
stored() { # SCENARIO TOOL DEST... : storage per destination after the run
  local d
  for d in "${@:3}"; do R[$1,$2,stored]+="$(stored_bytes "$d") "; done
}

# skopeo's source: a YAML file naming every repository (all tags)
SKOPEO_YAML="$TEST_TMP/skopeo-src.yaml"
{
  echo "$src_ADDR:"
  echo "  tls-verify: false"
  echo "  images:"
  for r in "${repos[@]}"; do echo "    $r: []"; done
} >"$SKOPEO_YAML"
skopeo_cmd() { # DEST -> CMD
  local addr_var="${1}_ADDR"
  CMD=(skopeo sync --all --src yaml --dest docker --src-tls-verify=false --dest-tls-verify=false
    --preserve-digests "$SKOPEO_YAML" "${!addr_var}")
}

# dest_limit CONFIG DEST : ferry's jobs in flight to DEST under CONFIG (its
# max_concurrency, or ferry's default)
dest_limit() {
  python3 - "$1" "$2" "$DEFAULT_CONC" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1])) or {}
v = ((c.get("registries") or {}).get(sys.argv[2]) or {}).get("max_concurrency")
print(int(v) if v else int(sys.argv[3]))
PY
}

# The parallel skopeo baseline: per destination, one `skopeo copy` per image
# (repository:tag in LIST), P at a time; the destinations' pools at once.
PCOPY_SH="$TEST_TMP/pcopy.sh"
cat >"$PCOPY_SH" <<'SH'
# pcopy.sh SRC LIST DST_ADDR P [DST_ADDR P ...]
set -u
src=$1 list=$2
shift 2
pids=()
while (($# >= 2)); do
  # Each copy is tried up to 3 times, as a careful script would: under
  # parallel pushes Distribution 2.8 can answer a blob HEAD with a 500 while
  # it commits that blob, and skopeo gives up on it at once.
  xargs -P "$2" -I{} sh -c 'for try in 1 2 3; do
      skopeo copy --all --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
        "docker://$0/$2" "docker://$1/$2" && exit 0
      echo "pcopy: $2 to $1: try $try failed" >&2; sleep 1
    done; exit 1' "$src" "$1" {} <"$list" &
  pids+=($!)
  shift 2
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
SH

sync_noop_count() { # ERRFILE : job lines of a ferry sync
  grep -c '^complete ' "$1" || true
}

tool_name() {
  case $1 in
    ferry) echo "ferry sync" ;;
    skopeo) echo "skopeo sync" ;;
    pcopy) echo "skopeo copy × P" ;;
  esac
}
scenario_name() {
  case $1 in
    one) echo "1 destination" ;;
    three) echo "3 destinations" ;;
    noop) echo "no-op, same node" ;;
    noop_new) echo "no-op, new node" ;;
  esac
}

# run_tool SCENARIO TOOL DEST... : one measured run of TOOL into DEST...
# (one, three: on fresh destinations; noop, noop_new: again into what the
# `one` run of the same tool left), verified, then recorded: a run whose
# destinations do not verify prints no figure.
declare -A PCOPY_P=() # SCENARIO -> the pools' sizes, "4" or "4 / 4 / 4"
run_tool() {
  local s=$1 t=$2 d a cfg
  shift 2
  case $t in
    ferry)
      cfg="$TEST_TMP/ferry-$s.yaml"
      case $s in
        noop) cfg="$TEST_TMP/ferry-one.yaml" ;; # the same data_dir: its journal knows
        *) ferry_config "$cfg" "$TEST_TMP/ferry-$s" "$@" ;;
      esac
      measure "ferry-$s" "src $*" "$FERRY" sync -c "$cfg"
      verify_dst "$(tool_name "$t") ($(scenario_name "$s"))" "$@"
      record "$s" ferry "$@"
      say "ferry sync ($(scenario_name "$s")): $(sync_noop_count "$TEST_TMP/ferry-$s.err") jobs complete; summary: $(tail -n 1 "$TEST_TMP/ferry-$s.out")"
      ;;
    skopeo)
      [[ $s == noop ]] || skopeo_cache_clear
      for d in "$@"; do # one destination after another, as a user would
        skopeo_cmd "$d"
        measure "skopeo-$s-$d" "src $d" "${CMD[@]}"
        verify_dst "$(tool_name "$t") ($(scenario_name "$s"))" "$d"
        record "$s" skopeo "$d"
      done
      skopeo_cache_check
      ;;
    pcopy)
      [[ $s == noop ]] || skopeo_cache_clear
      # the config the bench gives ferry for these destinations
      ferry_config "$TEST_TMP/pcopy.yaml" "$TEST_TMP/pcopy-data" "$@"
      CMD=(bash "$PCOPY_SH" "$src_ADDR" "$TEST_TMP/images.txt")
      PCOPY_P[$s]=""
      for d in "$@"; do
        a="${d}_ADDR"
        CMD+=("${!a}" "$(dest_limit "$TEST_TMP/pcopy.yaml" "$d")")
        PCOPY_P[$s]+="${PCOPY_P[$s]:+ / }${CMD[-1]}"
      done
      measure "pcopy-$s" "src $*" "${CMD[@]}"
      verify_dst "$(tool_name "$t") ($(scenario_name "$s"))" "$@"
      record "$s" pcopy "$@"
      skopeo_cache_check
      ;;
  esac
  if [[ $s == one || $s == three ]]; then stored "$s" "$t" "$@"; fi
}

# Each iteration runs every scenario with every tool, the tools taking turns
# at going first; R holds the last iteration's figures, RUN_LIST the per-run
# values that become medians.
TOOLS=(ferry skopeo pcopy)
SCENARIOS=(one noop noop_new three)
MEDIANS=(wall cpu rss regcpu src_req src_gets src_bytes)
declare -A RUN_LIST=()
ORDERS=""
for ((ITER = 1; ITER <= RUNS; ITER++)); do
  ((RUNS > 1)) && say "---- run $ITER of $RUNS"
  if ((ITER > 1)); then
    for key in "${!R[@]}"; do unset "R[$key]"; done
  fi
  rot=$(((ITER - 1) % ${#TOOLS[@]}))
  order=("${TOOLS[@]:rot}" "${TOOLS[@]:0:rot}")
  ORDERS+="${ORDERS:+; }run $ITER: $(for t in "${order[@]}"; do tool_name "$t"; done | paste -sd, | sed 's/,/, /g')"
  # ---- 1 destination, then its no-ops
  for t in "${order[@]}"; do
    fresh_dst d1
    run_tool one "$t" d1
    run_tool noop "$t" d1
    run_tool noop_new "$t" d1
  done
  # ---- 3 destinations
  for t in "${order[@]}"; do
    fresh_dst d1 d2 d3
    run_tool three "$t" d1 d2 d3
  done
  for s in "${SCENARIOS[@]}"; do
    for t in "${TOOLS[@]}"; do
      for m in "${MEDIANS[@]}"; do RUN_LIST[$s,$t,$m]+="${R[$s,$t,$m]} "; done
    done
  done
done
for s in "${SCENARIOS[@]}"; do
  for t in "${TOOLS[@]}"; do
    for m in "${MEDIANS[@]}"; do R[$s,$t,$m]=$(median "${RUN_LIST[$s,$t,$m]}"); done
  done
done

# Anything ferry printed besides its "complete" job lines and summary, verbatim.
FERRY_OTHER=""
for s in "${SCENARIOS[@]}"; do
  other=$(grep -vE '^complete |^sync complete' "$TEST_TMP/ferry-$s.err" || true)
  if [[ -n "$other" ]]; then
    FERRY_OTHER+="# $(scenario_name "$s") ($(wc -l <<<"$other") lines, first 20)"$'\n'"$(head -n 20 <<<"$other")"$'\n'
  fi
done
# The summary line is on stdout.
FERRY_SUMMARY=$(for s in "${SCENARIOS[@]}"; do grep -h '^sync complete' "$TEST_TMP/ferry-$s.out" | sed "s/^/$(scenario_name "$s"): /"; done || true)

# -------------------------------------------------------------- latency
LAT=""
if [[ "$SKIP_LATENCY" != 1 ]]; then
  lport=$(free_port)
  registry_start src2 --notify "http://127.0.0.1:$lport/v1/events/src2"
  registry_start lat
  cat >"$TEST_TMP/ferry-serve.yaml" <<YAML
data_dir: $TEST_TMP/ferry-serve
listen: 127.0.0.1:$lport
poll_interval: 0
registries:
  src2: { url: "http://$src2_ADDR", poll: false }
  lat: { url: "http://$lat_ADDR" }
rules:
  - name: latency
    source: src2
    repositories: ["**"]
    destinations: [{ registry: lat }]
YAML
  ferry_serve_start ferry_serve "$TEST_TMP/ferry-serve.yaml" "$lport"
  # Warm-up: one image, replicated before the clock starts.
  fixturegen push --registry "$src2_ADDR" --repo warm --tag v1 --seed warm --layers 1 --layer-size 16K --compact >"$TEST_TMP/warm.json"
  wait_until 30 bash -c "curl -sf '$lat_URL/v2/warm/tags/list' | grep -q v1" ||
    fail "ferry serve did not replicate the warm-up image in 30 s"
  declare -A c0=()
  for p in ferry_serve src2 lat; do v="${p}_PID"; c0[$p]=$(cpu_ticks "${!v}"); done
  say "latency: $PUSH_RATE pushes/s for $PUSH_SECONDS s ($PUSHERS pusher threads) to $src2_ADDR, watching $lat_ADDR"
  lt0=$EPOCHREALTIME
  /usr/bin/time -o "$TEST_TMP/latency.time" -f '%U %S' python3 "$TOOL" latency --src "$src2_ADDR" \
    --dst "$lat_ADDR" --repo lat --rate "$PUSH_RATE" --seconds "$PUSH_SECONDS" --pushers "$PUSHERS" \
    --poll 0.02 --drain 30 --per-tag "$TEST_TMP/latency-tags.json" >"$TEST_TMP/latency.json" ||
    fail "the latency pusher failed"
  LAT=$(cat "$TEST_TMP/latency.json")
  LAT_WALL=$(calc "$EPOCHREALTIME - $lt0")
  declare -A LAT_CPU=()
  for p in ferry_serve src2 lat; do
    v="${p}_PID"
    LAT_CPU[$p]=$(calc "($(cpu_ticks "${!v}") - ${c0[$p]}) / $(getconf CLK_TCK)")
  done
  LAT_CPU[tool]=$(awk '{ print $1 + $2 }' "$TEST_TMP/latency.time")
  "$FERRY" journal -c "$TEST_TMP/ferry-serve.yaml" ls --json >"$TEST_TMP/latency-journal.jsonl" ||
    fail "ferry journal ls failed"
  LAT_SPLIT=$(tool latsplit "$TEST_TMP/latency-tags.json" "$TEST_TMP/latency-journal.jsonl")
  say "latency: $(jq -c . <<<"$LAT"); $(jq -c . <<<"$LAT_SPLIT"); CPU s over $(fmt '%.0f' "$LAT_WALL") s: ferry serve ${LAT_CPU[ferry_serve]}, src2 ${LAT_CPU[src2]}, lat ${LAT_CPU[lat]}, pusher+watcher ${LAT_CPU[tool]}"
  SERVE_OTHER=$(grep -vE '^ferry: serving on |^$' "$TEST_TMP/ferry_serve.log" || true)
  if [[ -n "$SERVE_OTHER" ]]; then
    SERVE_OTHER="# $(wc -l <<<"$SERVE_OTHER") lines, first 20"$'\n'"$(head -n 20 <<<"$SERVE_OTHER")"
  fi
fi

# ------------------------------------------------------------------ report

dsum() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }' <<<"$1"; }
dlist() { # "a b c" FORMAT DIVISOR -> "x / y / z"
  awk -v f="$2" -v div="$3" '{ for (i = 1; i <= NF; i++) printf (i > 1 ? " / " : "") f, $i / div; print "" }' <<<"$1"
}
row() { # LABEL FERRY SKOPEO PCOPY FORMAT
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$5" "$2")" "$(fmt "$5" "$3")" "$(fmt "$5" "$4")" \
    "$(ratio "$2" "$3")" "$(ratio "$2" "$4")"
}
rowl() { # LABEL FERRY-TEXT SKOPEO-TEXT PCOPY-TEXT
  printf '| %s | %s | %s | %s | | |\n' "$1" "$2" "$3" "$4"
}
rowm() { # LABEL SCENARIO METRIC FORMAT : a median row
  row "$1" "${R[$2,ferry,$3]}" "${R[$2,skopeo,$3]}" "${R[$2,pcopy,$3]}" "$4"
}
rowd() { # LABEL SCENARIO METRIC FORMAT DIVISOR : per-destination lists
  rowl "$1" "$(dlist "${R[$2,ferry,$3]}" "$4" "$5")" "$(dlist "${R[$2,skopeo,$3]}" "$4" "$5")" \
    "$(dlist "${R[$2,pcopy,$3]}" "$4" "$5")"
}
rowr() { # LABEL SCENARIO METRIC : each run's values
  rowl "$1" "$(dlist "${RUN_LIST[$2,ferry,$3]}" '%.2f' 1)" "$(dlist "${RUN_LIST[$2,skopeo,$3]}" '%.2f' 1)" \
    "$(dlist "${RUN_LIST[$2,pcopy,$3]}" '%.2f' 1)"
}
table_head() {
  echo "| metric | ferry sync | skopeo sync (serial) | skopeo copy × P (parallel) | ferry ÷ skopeo sync | ferry ÷ skopeo copy × P |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
}
scenario_table() { # SCENARIO TITLE
  local s=$1 t
  echo "### $2"
  echo
  echo "P = ${PCOPY_P[$s]} (per destination). Medians of $RUNS runs; per-destination counts are the last run's."
  echo
  table_head
  rowm "wall s" "$s" wall '%.2f'
  rowm "CPU s (user+sys, all processes)" "$s" cpu '%.2f'
  rowm "peak RSS MiB (largest process)" "$s" rss '%.1f'
  rowm "registries' CPU s during the run" "$s" regcpu '%.2f'
  row "CPU s, tool + registries" "$(calc "${R[$s,ferry,cpu]} + ${R[$s,ferry,regcpu]}")" \
    "$(calc "${R[$s,skopeo,cpu]} + ${R[$s,skopeo,regcpu]}")" "$(calc "${R[$s,pcopy,cpu]} + ${R[$s,pcopy,regcpu]}")" '%.2f'
  rowr "wall s, each run" "$s" wall
  rowr "CPU s, each run" "$s" cpu
  row "source blob bytes read ÷ unique" "$(calc "${R[$s,ferry,src_bytes]} / $UNIQUE")" \
    "$(calc "${R[$s,skopeo,src_bytes]} / $UNIQUE")" "$(calc "${R[$s,pcopy,src_bytes]} / $UNIQUE")" '%.3f'
  rowm "source blob GETs" "$s" src_gets '%d'
  rowd "uploaded per destination ÷ unique" "$s" up_bytes '%.3f' "$UNIQUE"
  rowd "blob uploads per destination (unique blobs: $UNIQUE_BLOBS)" "$s" uploads '%d' 1
  local dups=()
  for t in "${TOOLS[@]}"; do
    dups+=("$(paste -d' ' <(tr ' ' '\n' <<<"${R[$s,$t,dups]}") <(tr ' ' '\n' <<<"${R[$s,$t,dup_bytes]}") |
      awk -v u="$UNIQUE" 'NF == 2 { printf "%s%d (%.3f)", (n++ ? " / " : ""), $1, $2 / u }')")
  done
  rowl "blobs uploaded again (extra bytes ÷ unique) per destination" "${dups[@]}"
  rowd "4xx answers to PUT/POST/PATCH per destination" "$s" put4xx '%d' 1
  rowd "cross-repository mounts per destination" "$s" mounts '%d' 1
  if [[ -n "${R[$s,ferry,stored]:-}" ]]; then
    rowd "stored per destination ÷ unique (blobs+manifests)" "$s" stored '%.3f' "$((UNIQUE + UNIQUE_MANIFESTS))"
  fi
  rowd "manifest PUTs per destination" "$s" manifest_puts '%d' 1
  rowm "requests to the source" "$s" src_req '%d'
  rowd "requests per destination" "$s" dst_req '%d' 1
  row "requests, all registries" "$((R[$s,ferry,src_req] + $(dsum "${R[$s,ferry,dst_req]}")))" \
    "$((R[$s,skopeo,src_req] + $(dsum "${R[$s,skopeo,dst_req]}")))" \
    "$((R[$s,pcopy,src_req] + $(dsum "${R[$s,pcopy,dst_req]}")))" '%d'
}
noop_table() { # SCENARIO TITLE TEXT
  local s=$1 t
  echo "### $2"
  echo
  echo "$3 Medians of $RUNS runs."
  echo
  table_head
  rowm "wall s" "$s" wall '%.2f'
  rowm "CPU s (user+sys, all processes)" "$s" cpu '%.2f'
  rowm "peak RSS MiB (largest process)" "$s" rss '%.1f'
  rowr "wall s, each run" "$s" wall
  rowm "source blob GETs" "$s" src_gets '%d'
  row "blob uploads" "$(dsum "${R[$s,ferry,uploads]}")" "$(dsum "${R[$s,skopeo,uploads]}")" "$(dsum "${R[$s,pcopy,uploads]}")" '%d'
  row "manifest PUTs" "$(dsum "${R[$s,ferry,manifest_puts]}")" "$(dsum "${R[$s,skopeo,manifest_puts]}")" \
    "$(dsum "${R[$s,pcopy,manifest_puts]}")" '%d'
  rowm "requests to the source" "$s" src_req '%d'
  row "requests to the destination" "$(dsum "${R[$s,ferry,dst_req]}")" "$(dsum "${R[$s,skopeo,dst_req]}")" \
    "$(dsum "${R[$s,pcopy,dst_req]}")" '%d'
}

misses=0
target() { # TEXT VERDICT
  [[ $2 == MISS ]] && misses=$((misses + 1))
  echo "- $1: **$2**"
}
sp() { calc "${R[$1,$2,wall]} / ${R[$1,ferry,wall]}"; } # SCENARIO TOOL : how many times faster ferry is
sp1=$(sp one skopeo)
sp3=$(sp three skopeo)
spn=$(sp noop skopeo)
cpu1=$(calc "${R[one,ferry,cpu]} / ${R[one,skopeo,cpu]}")
cpu3=$(calc "${R[three,ferry,cpu]} / ${R[three,skopeo,cpu]}")
rd1=$(calc "${R[one,ferry,src_bytes]} / $UNIQUE")
rd3=$(calc "${R[three,ferry,src_bytes]} / $UNIQUE")
rd_ok=MISS
if awk -v a="$rd1" -v b="$rd3" 'BEGIN { exit !(a > 0.995 && a < 1.005 && b > 0.995 && b < 1.005) }'; then rd_ok=PASS; fi
targets=$(
  echo "Stated against \`skopeo sync\` (serial), the run a skopeo user makes; the last two lines compare with the parallel \`skopeo copy\` pool and the new-node no-op, without a target."
  echo
  target "3 destinations ≥ ${T_SPEED3}× faster than skopeo sync ($(fmt '%.2f' "$sp3")×)" "$(verdict_ge "$sp3" "$T_SPEED3")"
  target "1 destination ≥ ${T_SPEED1}× faster than skopeo sync ($(fmt '%.2f' "$sp1")×)" "$(verdict_ge "$sp1" "$T_SPEED1")"
  target "source bytes read = ${T_SRC_READ}× unique whatever the number of destinations (1: $(fmt '%.3f' "$rd1")×, 3: $(fmt '%.3f' "$rd3")×)" "$rd_ok"
  cpu_v=PASS
  if ! ge "$T_CPU" "$cpu1" || ! ge "$T_CPU" "$cpu3"; then cpu_v=MISS; fi
  target "ferry's CPU ≤ ${T_CPU}× skopeo sync's (1 destination: $(fmt '%.3f' "$cpu1")×, 3 destinations: $(fmt '%.3f' "$cpu3")×)" "$cpu_v"
  target "no-op (same node) ≥ ${T_NOOP}× faster than skopeo sync's no-op ($(fmt '%.1f' "$spn")×)" "$(verdict_ge "$spn" "$T_NOOP")"
  if [[ -n "$LAT" ]]; then
    p50=$(jq -r '.p50_ms // 1e9' <<<"$LAT")
    p99=$(jq -r '.p99_ms // 1e9' <<<"$LAT")
    target "push-to-replicated p50 ≤ ${T_P50_MS} ms ($(fmt '%.0f' "$p50") ms)" "$(verdict_le "$p50" "$T_P50_MS")"
    target "push-to-replicated p99 ≤ ${T_P99_MS} ms ($(fmt '%.0f' "$p99") ms)" "$(verdict_le "$p99" "$T_P99_MS")"
  fi
  echo "- against skopeo copy × P (no target; its wall ÷ ferry's, ferry's CPU ÷ its): 1 destination $(fmt '%.2f' "$(sp one pcopy)")×, CPU $(fmt '%.2f' "$(calc "${R[one,ferry,cpu]} / ${R[one,pcopy,cpu]}")")×; 3 destinations $(fmt '%.2f' "$(sp three pcopy)")×, CPU $(fmt '%.2f' "$(calc "${R[three,ferry,cpu]} / ${R[three,pcopy,cpu]}")")×; no-op (same node) $(fmt '%.1f' "$(sp noop pcopy)")×"
  echo "- no-op of a new node (no target; their wall ÷ ferry's): skopeo sync $(fmt '%.1f' "$(sp noop_new skopeo)")×, skopeo copy × P $(fmt '%.1f' "$(sp noop_new pcopy)")×"
)
misses=$(grep -c '\*\*MISS\*\*' <<<"$targets" || true)

lat_md=""
if [[ -n "$LAT" ]]; then
  lat_md=$(
    echo "### push-to-replicated latency (\`ferry serve\`, Distribution notifications)"
    echo
    jq -r '
      "p50 \(.p50_ms | floor) ms, p90 \(.p90_ms | floor) ms, p99 \(.p99_ms | floor) ms, max \(.max_ms | floor) ms (min \(.min_ms | floor) ms) over \(.visible) pushes; " +
      "\(.missing) pushed but never seen within 30 s, \(.push_errors) push errors.\n\n" +
      "Pushes: \(.pushed) of \(.scheduled) scheduled at \(.target_rate)/s for \(.seconds) s; achieved \(.achieved_rate * 100 | round / 100)/s; " +
      "a push (HEAD, POST, PUT of the layer and of the config, then the manifest PUT) took p50 \(.push_p50_ms | floor) ms, p99 \(.push_p99_ms | floor) ms; " +
      "start lag behind schedule p50 \(.start_lag_p50_ms | floor) ms, p99 \(.start_lag_p99_ms | floor) ms, max \(.start_lag_max_ms | floor) ms. " +
      "Watcher: \(.polls) tags/list polls. p50 per 10 s of pushes: \([.p50_by_10s_ms[] | if . == null then "-" else (floor | tostring) end] | join(", ")) ms."' <<<"$LAT"
    echo
    jq -r '"Split (via the journal'"'"'s received_at, ms resolution): push answered → notification journaled by ferry p50 \(.notify_p50_ms | floor) ms, p99 \(.notify_p99_ms | floor) ms, max \(.notify_max_ms | floor) ms; journaled → visible at the destination p50 \(.replicate_p50_ms | floor) ms, p99 \(.replicate_p99_ms | floor) ms, max \(.replicate_max_ms | floor) ms (\(.journaled) tags journaled)."' <<<"$LAT_SPLIT"
    echo
    echo "CPU seconds over the $(fmt '%.0f' "$LAT_WALL") s of pushes and drain ($(nproc) cores = $(fmt '%.0f' "$(calc "$(nproc) * $LAT_WALL")") CPU s): ferry serve $(fmt '%.1f' "${LAT_CPU[ferry_serve]}"), source registry $(fmt '%.1f' "${LAT_CPU[src2]}"), destination registry $(fmt '%.1f' "${LAT_CPU[lat]}"), pusher + watcher (python) $(fmt '%.1f' "${LAT_CPU[tool]}")."
  )
  if ! awk -v a="$(jq -r .achieved_rate <<<"$LAT")" -v t="$PUSH_RATE" 'BEGIN { exit !(a >= 0.95 * t) }'; then
    lat_md+=$'\n\n'"**The pushers did not sustain $PUSH_RATE pushes/s** (achieved $(jq -r '.achieved_rate * 100 | round / 100' <<<"$LAT")/s)."
  fi
  if [[ -n "${SERVE_OTHER:-}" ]]; then
    lat_md+=$'\n\n'"ferry serve logged during the pushes (verbatim):"$'\n\n```\n'"$SERVE_OTHER"$'\n```'
  fi
fi

elapsed=$(calc "$EPOCHREALTIME - $bench_start" | xargs printf '%.0f')
header=$(
  echo "## fleet replication: ferry sync vs skopeo sync and parallel skopeo copy"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, ferry $(bench_commit) (binary sha256 $FERRY_SHA…), $(skopeo --version), Distribution $(docker-registry --version 2>/dev/null | awk '{print $NF}'), bench took ${elapsed} s$([[ "$QUICK" == 1 ]] && echo ' (BENCH_QUICK=1)'); load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (the machine may be shared)."
  echo
  fleet_describe
  echo
  echo "- **ferry sync**: \`ferry sync -c CONFIG\`, one rule \`repositories: [\"**\"]\` to d1 (or d1, d2, d3), a fresh \`data_dir\`, $([[ -n "$MAX_CONC" ]] && echo "\`max_concurrency: $MAX_CONC\` for every registry" || echo "defaults otherwise (\`max_concurrency\` $DEFAULT_CONC jobs in flight per destination)")."
  echo "- **skopeo sync (serial)** — what a skopeo user runs, and what the targets are stated against: \`skopeo sync --all --src yaml --dest docker --src-tls-verify=false --dest-tls-verify=false --preserve-digests SRC.yaml DST\`, the YAML listing every repository with all tags. skopeo sync copies one image at a time, and for 3 destinations it is three runs, one destination after another (wall and CPU summed, peak RSS the largest)."
  echo "- **skopeo copy × P (parallel)** — the baseline a careful user scripts: one \`skopeo copy --all --src-tls-verify=false --dest-tls-verify=false --preserve-digests docker://SRC/REPO:TAG docker://DST/REPO:TAG\` per image and destination, P at a time per destination (\`xargs -P\`), the destinations' pools at once; P = the destination's \`max_concurrency\` in the config the bench gives ferry, i.e. as many copies in flight per destination as ferry has jobs there. CPU is all the processes' (user+sys); peak RSS the largest process's."
  echo "- Every run into fresh destination registries; $(skopeo_cache_note). The tools take turns at going first ($ORDERS)."
  echo "- Source bytes read = the byte counts of the source's blob GET responses in its access log; uploaded = the sizes of the blobs whose uploads completed (201) at the destination, from its access log; stored = the destination's blob \`data\` files after the run. After every run every tag at every destination had the source's digest (tags/list + HEAD); a run that leaves one without fails the bench, which then reports nothing."
  echo "- no-op, same node: the 1-destination run repeated with nothing changed (ferry: the same \`data_dir\`, whose journal says nothing changed; skopeo: its blob-info cache as the run left it). no-op, new node: the same from nothing (ferry: a fresh \`data_dir\`, so it must look at every tag; skopeo: its cache deleted)."
  echo "- registries' CPU: user+sys seconds the source and destination registry processes used during the run (/proc/PID/stat); with $(nproc) cores, (tool + registries) ÷ $(nproc) is a floor for the wall time."
  echo "- $RUNS run(s) of every scenario, in turn; wall, CPU, RSS, registries' CPU and the source's requests and reads are **medians**, ratios are of medians; the other counts are from the last run."
)
report=$(
  scenario_table one "1 destination"
  echo
  scenario_table three "3 destinations"
  echo
  noop_table noop "no-op rerun, same node (1 destination, nothing changed)" \
    "The 1-destination run again into what it left: ferry trusts its journal; skopeo re-checks every tag."
  echo
  noop_table noop_new "no-op of a new node (1 destination, nothing changed, nothing remembered)" \
    "The same, from a fresh \`data_dir\` for ferry (it must re-check every tag too) and an empty blob-info cache for skopeo."
  echo
  if [[ -n "$lat_md" ]]; then
    echo "$lat_md"
    echo
  fi
  echo "### targets"
  echo
  echo "$targets"
)
details=$(
  echo "ferry sync summaries (last run):"
  echo
  echo '```'
  echo "$FERRY_SUMMARY"
  echo '```'
  if [[ -n "$FERRY_OTHER" ]]; then
    echo
    echo "ferry sync printed besides its \`complete\` lines and summaries (verbatim):"
    echo
    echo '```'
    echo "$FERRY_OTHER"
    echo '```'
  fi
)

mkdir -p "$(dirname "$OUT")"
printf '%s\n\n%s\n\n%s\n' "$header" "$report" "$details" >"$OUT"
echo
printf '%s\n\n%s\n\n%s\n' "$header" "$report" "$details"
echo "bench: report written to $OUT ($misses target(s) missed)"
# The README's block: the report without its title and the verbatim output,
# one heading level down.
printf '%s\n\n%s\n' "$header" "$report" | sed -e '1,2d' -e 's/^### /#### /' >"$TEST_TMP/readme-block.md"
bench_readme_write fleet "$TEST_TMP/readme-block.md"
