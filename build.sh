#!/usr/bin/env bash
# Ferry's one entry point: installs what is missing (Debian 12), builds, tests.
#
#   ./build.sh            install dependencies and build build/ferry
#   ./build.sh test       build, then run every test (ctest), then the unit and
#                         integration tests again under ASan+UBSan
#   ./build.sh test --no-sanitize   skip the sanitizer pass
#   ./build.sh bench [NAME...]  run the benchmarks in tests/bench/ (copy ingest fleet scale cluster; all by default)
#   ./build.sh demo       run Ferry for real: registries on loopback, ferry serve,
#                         sample images replicated, the dashboard; Ctrl-C stops it
#   ./build.sh fuzz [TARGET...]   run the libFuzzer targets (FUZZ_SECONDS each, clang)
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

PACKAGES=(
  build-essential cmake pkg-config git clang-format
  libuv1-dev libcurl4-openssl-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler
  librocksdb-dev libcjson-dev libyaml-dev libmicrohttpd-dev libcmocka-dev uthash-dev libsystemd-dev libhttp-parser-dev
  libnats-dev nats-server
  docker-registry skopeo apache2-utils jq python3 python3-yaml openssl curl procps time
  chromium
)
# The dashboard's npm packages (uPlot, and playwright-core for its browser
# test) need node and npm; any node >= 18 on the PATH will do (NodeSource's
# nodejs carries npm and conflicts with Debian's npm package).
NODE_PACKAGES=(nodejs npm)

install_deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "build.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
  # The package starts a registry on :5000 where an init system runs; Ferry's
  # tests start their own registries and need none.
  # nats-server likewise: the cluster tests start their own, on free ports.
  local unit
  for unit in docker-registry nats-server; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
      $sudo systemctl disable --now "$unit" || true
    fi
  done
}

# Installs replicator/daemon/dashboard/node_modules from its package-lock.json when
# uPlot (built into the binary) or playwright-core (the browser test) is missing.
install_dashboard_deps() {
  local dir="$top/replicator/daemon/dashboard"
  [ -d "$dir/node_modules/uplot" ] && [ -d "$dir/node_modules/playwright-core" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "build.sh: installing ${NODE_PACKAGES[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${NODE_PACKAGES[@]}"
  fi
  (cd "$dir" && npm ci --no-audit --no-fund)
}

build() {
  local dir=$1; shift
  cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}

# ./build.sh fuzz [TARGET...]: builds the libFuzzer targets of tests/fuzz/
# with clang in build-fuzz/ and runs each (or those named) for FUZZ_SECONDS
# (default 60) on a scratch copy of its seed corpus and regressions, so that
# the repository's corpus never grows by itself. Inputs that crash, leak or
# hang are left in build-fuzz/crashes/; exits 1 when there is any.
fuzz() {
  local seconds=${FUZZ_SECONDS:-60}
  local dir="$top/build-fuzz"
  local targets=("$@")
  if ! command -v clang >/dev/null 2>&1; then
    echo "build.sh: installing clang"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y clang
  fi
  if [ ${#targets[@]} -eq 0 ]; then
    local src
    for src in "$top"/tests/fuzz/*_fuzz.c; do
      src=$(basename "$src")
      targets+=("${src%_fuzz.c}")
    done
  fi
  local t binaries=()
  for t in "${targets[@]}"; do
    [ -f "$top/tests/fuzz/${t}_fuzz.c" ] || { echo "build.sh: no fuzz target '$t'" >&2; exit 2; }
    binaries+=("${t}_fuzz")
  done
  CC=clang cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_FUZZ=ON >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target "${binaries[@]}"
  mkdir -p "$dir/crashes" "$dir/logs" "$dir/tmp"
  local failed=0 rc execs result scratch
  printf '%-14s %12s  %s\n' target executions result
  for t in "${targets[@]}"; do
    scratch="$dir/scratch/$t"
    rm -rf "$scratch"
    mkdir -p "$scratch"
    cp -r "$top/tests/fuzz/corpus/$t/." "$scratch/"
    if [ -d "$top/tests/fuzz/regressions/$t" ]; then
      cp -r "$top/tests/fuzz/regressions/$t/." "$scratch/"
    fi
    # The config and dockerconfig targets write their input to files under TMPDIR.
    rc=0
    (cd "$dir" && TMPDIR="$dir/tmp" \
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$dir/tests/fuzz/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$dir/crashes/$t-" "$scratch" </dev/null >"$dir/logs/$t.log" 2>&1) || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/logs/$t.log" | tail -n 1)
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$dir/logs/$t.log" | tail -n 1 | tr -d '#' || true)
    if [ "$rc" -eq 0 ]; then
      result=ok
    else
      failed=1
      result="FAILED (exit $rc): $(grep -m1 -oE 'Test unit written to .*' "$dir/logs/$t.log" |
        sed 's/Test unit written to /input /' || true); log build-fuzz/logs/$t.log"
    fi
    printf '%-14s %12s  %s\n' "$t" "${execs:-?}" "$result"
  done
  if [ "$failed" -ne 0 ]; then
    echo "build.sh: fuzzing found crashes; inputs in build-fuzz/crashes/" >&2
    exit 1
  fi
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
  build)
    install_deps
    install_dashboard_deps
    build build
    echo "build.sh: built build/ferry"
    ;;
  test)
    sanitize=1
    for a in "$@"; do
      case "$a" in
        --no-sanitize) sanitize=0 ;;
        --sanitize-only) sanitize=2 ;;
        *) echo "build.sh: unknown test option: $a" >&2; exit 2 ;;
      esac
    done
    install_deps
    install_dashboard_deps
    if [ $sanitize -ne 2 ]; then
      build build
      (cd build && ctest --output-on-failure -j 2)
    fi
    if [ $sanitize -ne 0 ]; then
      # The same tests on an ASan+UBSan build; heavy benchmarks-sized cases
      # (label "heavy") stay in the plain pass only.
      build build-asan -DFERRY_SANITIZE=ON
      (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j 2 -L 'unit|integration' -LE heavy)
    fi
    ;;
  bench)
    install_deps
    install_dashboard_deps
    build build
    cmake --build build -j "$(nproc)" --target ingest_load >/dev/null
    # Each bench writes its figures into README.md between its markers
    # (<!-- BEGIN bench:NAME ... --> ... <!-- END bench:NAME -->, see
    # tests/bench/benchlib.sh), stamped with the commit and date, once all its
    # runs verified; a bench that fails writes nothing there, the others still
    # run, and this exits 1. BENCH_README=FILE writes into FILE instead.
    # `./build.sh bench` runs them all; `./build.sh bench scale fleet` those
    # named (scale.sh at its default sizes takes hours: 100,000 tags; cluster.sh
    # starts its own NATS servers).
    export BENCH_README="${BENCH_README:-$top/README.md}"
    bench_failed=()
    if [ $# -eq 0 ]; then
      set -- copy ingest fleet scale cluster
    fi
    for b in "$@"; do
      if [ ! -f "$top/tests/bench/$b.sh" ] || [ "$b" = benchlib ] || [ "$b" = fleetlib ]; then
        echo "build.sh: no bench '$b' (copy, ingest, fleet, scale or cluster)" >&2
        exit 2
      fi
    done
    for b in "$@"; do
      FERRY_BIN="$top/build/ferry" INGEST_LOAD="$top/build/ingest_load" \
        bash "$top/tests/bench/$b.sh" || bench_failed+=("$b")
    done
    if [ ${#bench_failed[@]} -gt 0 ]; then
      echo "build.sh: bench failed: ${bench_failed[*]} (their README blocks were left as they were)" >&2
      exit 1
    fi
    ;;
  chaos)
    # The fault scenarios in full (chaos/README.md): `./build.sh chaos` runs
    # all of them, `./build.sh chaos NAME [--short]` one.
    install_deps
    install_dashboard_deps
    build build
    if [ $# -eq 0 ]; then
      set -- all
    fi
    exec bash "$top/chaos/run.sh" "$@"
    ;;
  fuzz)
    install_deps
    install_dashboard_deps
    fuzz "$@"
    ;;
  demo)
    install_deps
    install_dashboard_deps
    build build
    exec bash "$top/deploy/demo.sh"
    ;;
  *)
    echo "usage: ./build.sh [build|test [--no-sanitize|--sanitize-only]|demo|bench|chaos [NAME [--short]]|fuzz [TARGET...]]" >&2
    exit 2
    ;;
esac
