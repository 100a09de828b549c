#!/usr/bin/env bash
# shellcheck disable=SC2154 # src_* and dst_* are set by lib.sh's registry_start
# Benchmark: `ferry copy` against `skopeo copy`, registry to registry, on loopback.
#
#   ./build.sh bench                      (builds, then runs this)
#   bash tests/bench/copy.sh              (uses build/ferry, or $FERRY_BIN)
#   BENCH_SKIP_BIG=1 BENCH_RUNS=1 bash tests/bench/copy.sh   (quick check)
#
# Three fixture images are pushed to a source registry (CNCF Distribution 2.8,
# started by tests/integration/lib.sh):
#   big    one 1 GiB layer (BENCH_BIG_SIZE)
#   many   50 layers: 25 x 256 KiB (shared "base" seed) + 25 x 2 MiB
#   multi  OCI index of 4 platforms, 1 shared 4 MiB base layer + 3 x 2 MiB own layers each
# Each image is copied BENCH_RUNS times by each tool, alternating which tool
# goes first (ferry in odd runs, skopeo in even ones), each run into a fresh
# repository (ferry-big-1, skopeo-big-1, ...) of a FRESH destination registry
# (new storage, new port), and skopeo's blob-info cache is deleted before each
# of its copies (benchlib.sh): otherwise it remembers the blobs from the
# previous run's repository and cross-repo mounts them instead of copying.
# After every copy the same copy is repeated into the same repository (the
# no-op re-copy; medians like the rest). Each run is timed with GNU time (wall, user,
# sys, peak RSS), and the requests it sent to both registries are counted from
# their access logs (lib.sh's readiness probes are left out). After every
# ferry run the destination's manifest digest must equal the source's and every
# blob must be there, otherwise the bench fails.
#
# Environment:
#   BENCH_RUNS=3            runs per tool per image (medians are reported)
#   BENCH_SKIP_BIG=1        skip the 1 GiB image
#   BENCH_BIG_SIZE=1G       the big image's layer (fixturegen size: 16M for a quick check)
#   BENCH_README=FILE       write the tables between FILE's bench:copy markers
#                           (./build.sh bench: README.md), when everything verified;
#                           needs BENCH_RUNS >= 3
#   BENCH_OUT=FILE          Markdown report (default: $FERRY_BUILD_DIR/bench/copy.md,
#                           i.e. build/bench/copy.md)
#   BENCH_SKOPEO_PRESERVE=1 skopeo gets --preserve-digests (default 1). skopeo
#                           gzips uncompressed layers otherwise (new digests, extra
#                           CPU): 0 measures plain `skopeo copy --all`.
#   BENCH_TIMEOUT=300       seconds allowed per copy
#   FERRY_BIN               ferry binary (default build/ferry)
#   KEEP_TMP=1              keep the registries' storage and logs
#
# Exit status: 0 when every copy succeeded and verified (targets missed or not),
# 1 when a copy failed, timed out or produced a wrong destination (then nothing
# is written to BENCH_README).
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

RUNS=${BENCH_RUNS:-3}
SKIP_BIG=${BENCH_SKIP_BIG:-0}
BIG_SIZE=${BENCH_BIG_SIZE:-1G}
OUT=${BENCH_OUT:-$bench_root/copy.md}
PRESERVE=${BENCH_SKOPEO_PRESERVE:-1}
TIMEOUT=${BENCH_TIMEOUT:-300}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_RUNS must be a positive integer, got '$RUNS'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_TIMEOUT must be a positive integer, got '$TIMEOUT'"
[[ "$BIG_SIZE" =~ ^[1-9][0-9]*[KMG]?$ ]] || fail "BENCH_BIG_SIZE must be a size like 16M or 1G, got '$BIG_SIZE'"
bench_readme_check copy "$RUNS"

require_ferry
# A snapshot: a rebuild of build/ferry during the bench must not mix binaries.
FERRY="$TEST_TMP/ferry"
cp "$(ferry_bin)" "$FERRY"
FERRY_SHA=$(sha256sum "$FERRY" | cut -c1-12)
for tool in skopeo curl jq docker-registry timeout /usr/bin/time; do
  command -v "$tool" >/dev/null || fail "bench needs $tool"
done

# Targets (ferry relative to skopeo; RSS absolute).
T_WALL=0.7
T_CPU=0.5
T_RSS_MIB=32

SKOPEO_FLAGS=(--all --src-tls-verify=false --dest-tls-verify=false)
if [[ "$PRESERVE" == 1 ]]; then
  SKOPEO_FLAGS+=(--preserve-digests)
fi
ACCEPT="application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

bench_start=$EPOCHREALTIME
say() { echo "bench: $*" >&2; }

# ------------------------------------------------------------------ helpers

# reqs NAME : requests in NAME's access log so far (benchlib.sh)
reqs() { access_settled "$1"; }

# manifest_digest ADDR REPO REF : digest of the manifest bytes the registry serves
manifest_digest() {
  local f="$TEST_TMP/manifest.$$"
  local code
  code=$(curl -sS -o "$f" -w '%{http_code}' -H "Accept: $ACCEPT" "http://$1/v2/$2/manifests/$3") || code=000
  if [[ "$code" != 200 ]]; then
    echo "HTTP-$code"
    return 0
  fi
  digest_of <"$f"
}

# verify IMAGE ADDR REPO TAG WHO : the destination holds the source's manifest
# digest and every blob of the image
verify() {
  local image=$1 addr=$2 repo=$3 tag=$4 who=$5 want got
  want=$(jq -r .digest "$TEST_TMP/$image.json")
  got=$(manifest_digest "$addr" "$repo" "$tag")
  [[ "$got" == "$want" ]] ||
    fail "$who: $addr/$repo:$tag has manifest digest $got, source has $want"
  local urls=() d
  for d in $(jq -r '.blobs[].digest' "$TEST_TMP/$image.json"); do
    urls+=(-o /dev/null "http://$addr/v2/$repo/blobs/$d")
  done
  local codes n=$((${#urls[@]} / 3))
  codes=$(curl -s -I -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
  [[ "$codes" == " $n 200;" ]] ||
    fail "$who: not every blob of $image is at $addr/$repo (HEAD statuses: $codes)"
}

# fresh_dst : (re)start the destination registry on empty storage
fresh_dst() {
  if [[ -n "${dst_PID:-}" ]]; then
    registry_stop dst
    rm -rf "$dst_STORAGE"
  fi
  registry_start dst
}

# measure LABEL CMD... : run CMD under GNU time; sets M_WALL M_USER M_SYS
# M_RSS (KiB) M_SRC M_DST (requests to each registry during the run).
# A failure (exit status, timeout) prints its stderr and fails the bench.
measure() {
  local label=$1
  shift
  local tf="$TEST_TMP/$label.time" ef="$TEST_TMP/$label.err" of="$TEST_TMP/$label.out"
  local s0 d0 rc=0
  s0=$(reqs src)
  d0=$(reqs dst)
  timeout "$TIMEOUT" /usr/bin/time -o "$tf" -f '%e %U %S %M' "$@" >"$of" 2>"$ef" || rc=$?
  if ((rc != 0)); then
    echo "----- $label: exit status $rc$( ((rc == 124)) && echo " (timed out after $TIMEOUT s)") -----" >&2
    echo "command: $*" >&2
    echo "----- stderr -----" >&2
    cat "$ef" >&2
    echo "----- stdout (last 20 lines) -----" >&2
    tail -n 20 "$of" >&2
    fail "$label failed (exit $rc)"
  fi
  read -r M_WALL M_USER M_SYS M_RSS < <(tail -n 1 "$tf")
  M_SRC=$(($(reqs src) - s0))
  M_DST=$(($(reqs dst) - d0))
}

median() {
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
    END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# calc EXPR : awk arithmetic, printed with %g-ish precision by the caller
calc() { awk "BEGIN { print $* }"; }
fmt() { awk -v v="$2" "BEGIN { printf \"$1\", v }"; }
ratio() { # A B -> A/B formatted, or n/a
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f×", a / b }'
}

# ---------------------------------------------------------------- fixtures

registry_start src
images=()
if [[ "$SKIP_BIG" != 1 ]]; then
  images+=(big)
fi
images+=(many multi)

push() { # IMAGE FIXTUREGEN-ARGS...
  local image=$1 t0
  shift
  t0=$EPOCHREALTIME
  fixturegen push --registry "$src_ADDR" --repo "$image" --tag v1 --compact "$@" >"$TEST_TMP/$image.json" ||
    fail "fixturegen could not push $image"
  say "pushed $image: $(jq -r '"\(.blobs | length) blobs, \(.bytes / 1048576 | . * 10 | round / 10) MiB, \(.media_type | sub("^application/vnd\\.(oci\\.image|docker\\.distribution)\\."; ""))"' "$TEST_TMP/$image.json") ($(calc "$EPOCHREALTIME - $t0" | xargs printf '%.1f') s)"
}
for image in "${images[@]}"; do
  case $image in
    big) push big --seed 101 --layers 1 --layer-size "$BIG_SIZE" ;;
    many) push many --seed 202 --base-seed 203 --base-layers 25 --base-layer-size 256K \
      --layers 25 --layer-size 2M ;;
    multi) push multi --seed 303 --base-seed 304 --base-layers 1 --base-layer-size 4M \
      --layers 3 --layer-size 2M --platforms linux/amd64,linux/arm64,linux/ppc64le,linux/s390x ;;
  esac
done

# -------------------------------------------------------------------- runs

declare -A R=()   # R[image,tool,metric] = space-separated samples (noop_wall, noop_req: the re-copies)
runs_md=""

record() { # IMAGE TOOL RUN
  local k="$1,$2"
  R[$k,wall]+="$M_WALL "
  R[$k,cpu]+="$(calc "$M_USER + $M_SYS") "
  R[$k,rss]+="$(calc "$M_RSS / 1024") "
  R[$k,req]+="$((M_SRC + M_DST)) "
  runs_md+="| $1 | $2 | $3 | $M_WALL | $M_USER | $M_SYS | $(fmt '%.1f' "$(calc "$M_RSS / 1024")") | $M_SRC | $M_DST |"$'\n'
  say "$(printf '%-5s %-6s %-5s wall %6.2f s  cpu %6.2f s  rss %6.1f MiB  requests %4d (src %d, dst %d)' \
    "$1" "$2" "$3" "$M_WALL" "$(calc "$M_USER + $M_SYS")" "$(calc "$M_RSS / 1024")" \
    $((M_SRC + M_DST)) "$M_SRC" "$M_DST")"
}

copy_cmd() { # TOOL IMAGE REPO -> sets CMD
  local tool=$1 image=$2 repo=$3
  if [[ $tool == ferry ]]; then
    CMD=("$FERRY" copy --no-cache --no-progress "$src_ADDR/$image:v1" "$dst_ADDR/$repo:v1")
  else
    CMD=(skopeo copy "${SKOPEO_FLAGS[@]}" "docker://$src_ADDR/$image:v1" "docker://$dst_ADDR/$repo:v1")
  fi
}

for image in "${images[@]}"; do
  for ((run = 1; run <= RUNS; run++)); do
    order=(ferry skopeo)
    ((run % 2)) || order=(skopeo ferry) # alternate which tool goes first
    for tool in "${order[@]}"; do
      repo="$tool-$image-$run"
      fresh_dst
      copy_cmd "$tool" "$image" "$repo"
      [[ $tool == skopeo ]] && skopeo_cache_clear
      measure "$repo" "${CMD[@]}"
      [[ $tool == skopeo ]] && skopeo_cache_check
      if [[ $tool == ferry || "$PRESERVE" == 1 ]]; then # before any figure is printed
        verify "$image" "$dst_ADDR" "$repo" v1 "$tool run $run of $image"
      fi
      record "$image" "$tool" "$run"
      # The no-op re-copy: the same copy again, into the repository just written.
      measure "$repo-noop" "${CMD[@]}"
      if [[ $tool == ferry || "$PRESERVE" == 1 ]]; then
        verify "$image" "$dst_ADDR" "$repo" v1 "$tool no-op re-copy of $image"
      fi
      R[$image,$tool,noop_wall]+="$M_WALL "
      R[$image,$tool,noop_req]+="$((M_SRC + M_DST)) "
      runs_md+="| $image | $tool | $run no-op | $M_WALL | $M_USER | $M_SYS | $(fmt '%.1f' "$(calc "$M_RSS / 1024")") | $M_SRC | $M_DST |"$'\n'
      say "$(printf '%-5s %-6s no-op wall %6.2f s  requests %4d (src %d, dst %d)' \
        "$image" "$tool" "$M_WALL" $((M_SRC + M_DST)) "$M_SRC" "$M_DST")"
    done
  done
done

# ------------------------------------------------------------- the floor
# What the two registries allow at best for the 1 GiB layer: the layer alone,
# streamed by curl from a GET straight into one monolithic PUT, with no client
# logic at all. A copier cannot be much faster than this.
declare -A FLOOR=()
# shellcheck disable=SC2016 # expanded by the inner bash
FLOOR_SCRIPT='set -euo pipefail
loc=$(curl -s -D - -o /dev/null -X POST "http://$2/v2/floor/blobs/uploads/" |
  tr -d "\r" | awk "tolower(\$1) == \"location:\" { print \$2 }")
[[ "$loc" == http* ]] || loc="http://$2$loc"
curl -sf "http://$1/v2/big/blobs/$3" |
  curl -sf -o /dev/null -X PUT -H "Content-Type: application/octet-stream" -T - "$loc&digest=$3"'
if [[ " ${images[*]} " == *" big "* ]]; then
  layer=$(jq -r '.blobs | max_by(.size) | .digest' "$TEST_TMP/big.json")
  samples=""
  for ((run = 1; run <= RUNS; run++)); do
    fresh_dst
    measure "floor-$run" bash -c "$FLOOR_SCRIPT" _ "$src_ADDR" "$dst_ADDR" "$layer"
    code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://$dst_ADDR/v2/floor/blobs/$layer")
    [[ "$code" == 200 ]] || fail "the floor copy did not land (HEAD $code)"
    samples+="$M_WALL "
  done
  # shellcheck disable=SC2086
  FLOOR[big]=$(median $samples)
  say "floor for big: ${FLOOR[big]} s (curl GET | curl PUT of the layer alone)"
fi

# ------------------------------------------------------------------ report

misses=0
report=""
for image in "${images[@]}"; do
  declare -A med=()
  for tool in ferry skopeo; do
    for m in wall cpu rss req noop_wall noop_req; do
      # shellcheck disable=SC2086 # samples are space-separated numbers
      med[$tool,$m]=$(median ${R[$image,$tool,$m]})
    done
  done
  desc=$(jq -r '"\(.blobs | length) blobs, \(.bytes / 1048576 | . * 10 | round / 10) MiB, \(.media_type)"' "$TEST_TMP/$image.json")
  row() { # LABEL FORMAT FERRY SKOPEO
    printf '| %s | %s | %s | %s |\n' "$1" "$(fmt "$2" "$3")" "$(fmt "$2" "$4")" "$(ratio "$3" "$4")"
  }
  verdict() { # VALUE LIMIT
    awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l) ? "PASS" : "MISS" }'
  }
  r_wall=$(calc "${med[ferry,wall]} / (${med[skopeo,wall]} > 0 ? ${med[skopeo,wall]} : 1)")
  r_cpu=$(calc "${med[ferry,cpu]} / (${med[skopeo,cpu]} > 0 ? ${med[skopeo,cpu]} : 1)")
  v_wall=$(verdict "$r_wall" "$T_WALL")
  v_cpu=$(verdict "$r_cpu" "$T_CPU")
  v_rss=$(verdict "${med[ferry,rss]}" "$T_RSS_MIB")
  for v in "$v_wall" "$v_cpu" "$v_rss"; do
    [[ $v == MISS ]] && misses=$((misses + 1))
  done
  table=$(
    echo "### $image ($desc; median of $RUNS run(s))"
    echo
    echo "| metric | ferry | skopeo | ferry/skopeo |"
    echo "| --- | ---: | ---: | ---: |"
    row "wall s" '%.2f' "${med[ferry,wall]}" "${med[skopeo,wall]}"
    row "CPU s" '%.2f' "${med[ferry,cpu]}" "${med[skopeo,cpu]}"
    row "peak RSS MiB" '%.1f' "${med[ferry,rss]}" "${med[skopeo,rss]}"
    row "requests" '%g' "${med[ferry,req]}" "${med[skopeo,req]}"
    row "no-op re-copy wall s" '%.2f' "${med[ferry,noop_wall]}" "${med[skopeo,noop_wall]}"
    row "no-op requests" '%g' "${med[ferry,noop_req]}" "${med[skopeo,noop_req]}"
    if [[ -n "${FLOOR[$image]:-}" ]]; then
      printf '| registry floor wall s (curl GET \\| curl PUT of the layer alone) | %.2f | | |\n' "${FLOOR[$image]}"
      printf '| wall ÷ the floor | %s | %s | |\n' \
        "$(ratio "${med[ferry,wall]}" "${FLOOR[$image]}")" "$(ratio "${med[skopeo,wall]}" "${FLOOR[$image]}")"
    fi
    echo
    printf 'targets: wall ≤ %s× %s (%.2f×), CPU ≤ %s× %s (%.2f×), peak RSS ≤ %s MiB %s (%.1f MiB)\n' \
      "$T_WALL" "$v_wall" "$r_wall" "$T_CPU" "$v_cpu" "$r_cpu" "$T_RSS_MIB" "$v_rss" "${med[ferry,rss]}"
  )
  report+="$table"$'\n\n'
  unset med
done

elapsed=$(calc "$EPOCHREALTIME - $bench_start" | xargs printf '%.0f')
skopeo_cmd="skopeo copy ${SKOPEO_FLAGS[*]} docker://SRC docker://DST"
header=$(
  echo "## ferry copy vs skopeo copy"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, ferry $(bench_commit) (binary sha256 $FERRY_SHA…), $(skopeo --version), Distribution $(docker-registry --version 2>/dev/null | awk '{print $NF}'), BENCH_RUNS=$RUNS, bench took ${elapsed} s."
  echo
  echo "- ferry: \`ferry copy --no-cache --no-progress SRC DST\`"
  echo "- skopeo: \`$skopeo_cmd\`"
  echo "- every run copies into a fresh repository of a fresh destination registry, the tools taking turns at going first; $(skopeo_cache_note)."
  echo "- medians of $RUNS runs; requests = both registries' access-log lines during the run; CPU = user + sys; no-op re-copy = the same copy again into the repository just written, after every run."
  if [[ -n "${FLOOR[big]:-}" ]]; then
    echo "- registry floor: the big layer alone, piped from \`curl\` GET into one \`curl\` PUT, with no client logic (median of $RUNS): no copier can be much faster than the two registries take the bytes."
  fi
)
runs_table=$(
  echo "### every run"
  echo
  echo "| image | tool | run | wall s | user s | sys s | peak RSS MiB | src requests | dst requests |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s' "$runs_md"
)

mkdir -p "$(dirname "$OUT")"
printf '%s\n\n%s\n%s\n' "$header" "$report" "$runs_table" >"$OUT"
echo
printf '%s\n\n%s' "$header" "$report"
echo "bench: report written to $OUT ($misses target(s) missed)"
# The README's block: the report without its title, one heading level down.
printf '%s\n\n%s' "$header" "$report" | sed -e '1,2d' -e 's/^### /#### /' >"$TEST_TMP/readme-block.md"
bench_readme_write copy "$TEST_TMP/readme-block.md"
