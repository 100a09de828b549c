#!/usr/bin/env bash
# Ferry's one entry point: installs what is missing (Debian 12), builds, tests.
#
#   ./build.sh            install dependencies and build build/ferry
#   ./build.sh test       build, then run every test (ctest), then the unit and
#                         integration tests again under ASan+UBSan
#   ./build.sh test --no-sanitize   skip the sanitizer pass
#   ./build.sh bench      run the benchmarks in tests/bench/ (ferry vs skopeo)
#   ./build.sh demo       runs Ferry for real (comes with a later issue)
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

PACKAGES=(
  build-essential cmake pkg-config git clang-format
  libuv1-dev libcurl4-openssl-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler
  librocksdb-dev libcjson-dev libyaml-dev libmicrohttpd-dev libcmocka-dev uthash-dev libsystemd-dev
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
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    $sudo systemctl disable --now docker-registry || true
  fi
}

# Installs replicator/dashboard/node_modules from its package-lock.json when
# uPlot (built into the binary) or playwright-core (the browser test) is missing.
install_dashboard_deps() {
  local dir="$top/replicator/dashboard"
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
    bash "$top/tests/bench/copy.sh" "$@"
    bash "$top/tests/bench/ingest.sh" "$@"
    ;;
  demo)
    install_deps
    install_dashboard_deps
    build build
    exec bash "$top/deploy/demo.sh"
    ;;
  *)
    echo "usage: ./build.sh [build|test|bench|demo]" >&2
    exit 2
    ;;
esac
