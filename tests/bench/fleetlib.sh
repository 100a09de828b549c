# shellcheck shell=bash
# shellcheck disable=SC2154 # src_ADDR ... are set by lib.sh's registry_start
# Sourced by the benches that replicate the fleet (fleet.sh, cluster.sh),
# after lib.sh and benchlib.sh: the fleet's size, its push to a source
# registry, fresh destination registries, and the check that a destination
# holds the fleet. The python side is fleettool.py (`tool`).
#
#   fleet_size_options      REPOS, TAGS, INDEX_EVERY from BENCH_QUICK, BENCH_REPOS, BENCH_TAGS
#   fleet_push              registry src, the fleet pushed to it (FLEET_FILES and the figures below)
#   fresh_dst NAME...       (re)start destination registries on empty storage
#   verify_dst WHO REG...   every fleet tag at every REG has the source's digest, or the bench fails
#   stored_bytes NAME       blob data bytes in a registry's storage
#   fleet_describe          the report's sentence on the fleet (after fleet_push)
#
# The fleet: REPOS repositories (fleet-00 ...) x TAGS tags (v1 ...); every
# image has 3 fleet-wide base layers of 20, 8 and 3 MiB, a 4 MiB layer of its
# repository and a 512 KiB layer of its own; every INDEX_EVERY-th tag is a
# 2-platform OCI index (fleettool.py's FleetPlan).

TOOL="$FERRY_SOURCE_DIR/tests/bench/fleettool.py"
export FERRY_FIXTURES_DIR="$FERRY_SOURCE_DIR/tests/fixtures"
tool() { python3 "$TOOL" "$@"; }

# fleet_size_options : the fleet's size (40 x 5, every 5th tag an index;
# BENCH_QUICK=1: 8 x 3, every 3rd), BENCH_REPOS and BENCH_TAGS overriding
fleet_size_options() {
  QUICK=${BENCH_QUICK:-0}
  if [[ "$QUICK" == 1 ]]; then
    REPOS=${BENCH_REPOS:-8}
    TAGS=${BENCH_TAGS:-3}
    INDEX_EVERY=3 # so that the quick fleet has indexes too
  else
    REPOS=${BENCH_REPOS:-40}
    TAGS=${BENCH_TAGS:-5}
    INDEX_EVERY=5
  fi
  [[ "$REPOS" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_REPOS must be a positive integer, got '$REPOS'"
  [[ "$TAGS" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_TAGS must be a positive integer, got '$TAGS'"
  ((REPOS <= 100)) || fail "BENCH_REPOS must be at most 100"
}

# stored_bytes NAME : sum of the blob data files in NAME's storage
stored_bytes() {
  local dir="$TEST_TMP/$1/docker/registry/v2/blobs"
  if [[ -d "$dir" ]]; then
    find "$dir" -type f -name data -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'
  else
    echo 0
  fi
}

# fresh_dst NAME... : (re)start each destination registry on empty storage;
# the previous log is kept as NAME.log.N (registry_start truncates NAME.log)
declare -A DST_GEN=()
fresh_dst() {
  local name pidvar
  for name in "$@"; do
    pidvar="${name}_PID"
    if [[ -n "${_ITEST_PIDS[registry:$name]:-}" ]]; then
      registry_stop "$name"
    fi
    if [[ -n "${!pidvar:-}" ]]; then
      DST_GEN[$name]=$((${DST_GEN[$name]:-0} + 1))
      mv "$TEST_TMP/$name.log" "$TEST_TMP/$name.log.${DST_GEN[$name]}"
      rm -rf "${TEST_TMP:?}/$name"
    fi
    registry_start "$name"
  done
}

# verify_dst WHO REG... : every fleet tag at every REG has the source's digest.
# A failure ends the bench at once (exit 1): FAIL and what is wrong, and no
# figure, report or README block, since figures of a copy that did not land
# mean nothing. BENCH_VERIFY_HOOK runs first (to test exactly that).
verify_dst() {
  local who=$1 r out addr_var
  shift
  for r in "$@"; do
    addr_var="${r}_ADDR"
    if [[ -n "${BENCH_VERIFY_HOOK:-}" && "$who" != fixturegen ]]; then
      (
        export REG=$r WHO=$who STORAGE="$TEST_TMP/$r"
        eval "$BENCH_VERIFY_HOOK"
      ) || true
    fi
    if out=$(tool verify --addr "${!addr_var}" "${FLEET_FILES[@]}"); then
      say "$who: $r holds all $(jq -r .total <<<"$out") tags of $(jq -r .repos <<<"$out") repositories with the source's digests"
    else
      echo "FAIL: $who: $r does not hold the fleet: $(jq -r '"\(.ok) of \(.total) tags right; \(.nbad) wrong: " + (.bad | join("; "))' <<<"$out" 2>/dev/null || echo "$out")" >&2
      fail "a destination did not hold the fleet after a run: no figures"
    fi
  done
}

# fleet_push : start the source registry `src` and push the fleet to it, the
# first repository alone (it uploads the fleet base layers), then 4 at a
# time (xargs -P 4), each one's tags in order; fixturegen's JSON lines in
# $TEST_TMP/fleet/REPO.jsonl (FLEET_FILES) and all of them in
# $TEST_TMP/fleet.jsonl, "REPO:TAG" lines in $TEST_TMP/images.txt. Sets
# repos (the names), n_images, PUSH_S (seconds), UNIQUE and UNIQUE_BLOBS
# (distinct blobs' bytes and count), UNIQUE_MANIFESTS and N_MANIFESTS,
# N_INDEXES, LOGICAL (bytes if every image were stored alone).
fleet_push() {
  local i t0
  registry_start src
  mkdir -p "$TEST_TMP/fleet"
  repos=()
  for ((i = 0; i < REPOS; i++)); do repos+=("$(printf 'fleet-%02d' "$i")"); done
  say "pushing the fleet: $REPOS repositories x $TAGS tags to $src_ADDR"
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2016 # expanded by the inner sh
  local push_one='python3 "$0" push-repo --registry "$1" --repo "$2" --tags "$3" --index-every "$5" >"$4/$2.jsonl"'
  sh -c "$push_one" "$TOOL" "$src_ADDR" "${repos[0]}" "$TAGS" "$TEST_TMP/fleet" "$INDEX_EVERY" ||
    fail "could not push ${repos[0]}"
  if ((REPOS > 1)); then
    printf '%s\n' "${repos[@]:1}" |
      xargs -P 4 -I{} sh -c "$push_one" "$TOOL" "$src_ADDR" {} "$TAGS" "$TEST_TMP/fleet" "$INDEX_EVERY" ||
      fail "pushing the fleet failed"
  fi
  PUSH_S=$(calc "$EPOCHREALTIME - $t0")
  FLEET_FILES=("$TEST_TMP"/fleet/*.jsonl)
  cat "${FLEET_FILES[@]}" >"$TEST_TMP/fleet.jsonl"
  n_images=$(wc -l <"$TEST_TMP/fleet.jsonl")
  ((n_images == REPOS * TAGS)) || fail "fixturegen pushed $n_images images, expected $((REPOS * TAGS))"
  UNIQUE=$(jq -s '[.[].blobs[]] | unique_by(.digest) | map(.size) | add' "$TEST_TMP/fleet.jsonl")
  UNIQUE_BLOBS=$(jq -s '[.[].blobs[]] | unique_by(.digest) | length' "$TEST_TMP/fleet.jsonl")
  UNIQUE_MANIFESTS=$(jq -s '[.[].manifests[]] | unique_by(.digest) | map(.size) | add' "$TEST_TMP/fleet.jsonl")
  N_MANIFESTS=$(jq -s '[.[].manifests[]] | unique_by(.digest) | length' "$TEST_TMP/fleet.jsonl")
  N_INDEXES=$(jq -s '[.[] | select(.children | length > 0)] | length' "$TEST_TMP/fleet.jsonl")
  LOGICAL=$(jq -s '[.[].bytes] | add' "$TEST_TMP/fleet.jsonl")
  say "fleet pushed in $(fmt '%.1f' "$PUSH_S") s: $n_images images ($N_INDEXES indexes), $UNIQUE_BLOBS unique blobs, $(MiB "$UNIQUE") MiB unique blob bytes (+ $N_MANIFESTS manifests, $(MiB "$UNIQUE_MANIFESTS") MiB); $(MiB "$LOGICAL") MiB if every image were stored alone; source storage $(MiB "$(stored_bytes src)") MiB"
  verify_dst "fixturegen" src
  jq -r '"\(.repository):\(.tag)"' "$TEST_TMP/fleet.jsonl" >"$TEST_TMP/images.txt"
}

# fleet_describe : the report's sentence on the fleet, after fleet_push
fleet_describe() {
  echo "Fleet: $REPOS repositories × $TAGS tags = $n_images images ($N_INDEXES of them 2-platform OCI indexes: linux/amd64 and linux/arm64); each image: fleet base layers of 20, 8 and 3 MiB, a 4 MiB layer per repository, 512 KiB per tag and platform (uncompressed tar layers; pushed by fixturegen's own code with a \`Plan\` subclass, since its command line gives every base layer one size and has no per-repository layer). $UNIQUE_BLOBS unique blobs, **$(MiB "$UNIQUE") MiB unique** ($N_MANIFESTS manifests, $(MiB "$UNIQUE_MANIFESTS") MiB, besides); $(MiB "$LOGICAL") MiB if each image were copied alone$( ((INDEX_EVERY != 5)) && echo "; every ${INDEX_EVERY}rd tag an index (BENCH_QUICK)"). Pushed in $(fmt '%.0f' "$PUSH_S") s."
}
